"""What `dash-ray` says before it talks to any platform: `--help` for every command and
argument, arguments checked, and a file that is missing, does not parse or is an invalid spec
reported as what it is, every problem at once. Run in-process (`main`); nothing here needs Ray:
DASH_URL points at a closed port, and each command here stops before sending anything."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dash_ray.cli import main
from dash_ray.cli.commandline import build_parser
from tests.conftest import free_port


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "dash-ray") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _subparsers(sub, f"{prefix} {name}")
    return found


def test_every_command_and_argument_has_help_text() -> None:
    missing = []
    for name, parser in _subparsers(build_parser()):
        if name != "dash-ray" and not parser.description:
            missing.append(f"{name}: no description")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_deploy_help_says_it_takes_dashboards_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["deploy", "--help"])
    assert "dashboard" in capsys.readouterr().out


def test_ls_help_says_what_restarts_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ls", "--help"])
    assert "restart by hand is not counted" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", [["records", "demo"], ["dead", "demo"], ["query", "demo"]])
def test_a_limit_below_one_is_refused(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--limit", "0"])
    assert exit_.value.code == 2
    assert "--limit: must be a whole number of at least 1, not '0'" in capsys.readouterr().err


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """DASH_URL at a port nothing listens on: a command that sent anything would fail."""
    monkeypatch.setenv("DASH_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("DASH_TOKEN", "dash_000000000000_unused")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_missing_file_is_named_as_missing_not_as_an_invalid_spec(offline: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "nope.yaml"]) == 1
    assert capsys.readouterr().err == "error: cannot read nope.yaml: No such file or directory\n"


def test_a_yaml_error_names_the_file_line_and_column(offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (offline / "bad.yaml").write_text("id: weather\nmapping: {fields: [\n")
    assert main(["deploy", "bad.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: bad.yaml, line 3, column 1: not valid YAML: ") and "unicode" not in err, err
    assert err.count("\n") == 1, err


def test_every_problem_of_a_spec_is_listed_at_once(offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 22 item 9: a bad `id` hid the other four problems until it was fixed."""
    (offline / "bad.yaml").write_text(
        "id: Bad_Id\n"
        "hot_records: 0\n"
        "mapping:\n"
        "  fields:\n"
        "    temp_c: {path: $.t, type: double}\n"
        "    temp_f: {expr: 'temp_x * 9 / 5 + 32', type: double}\n"
        "  filter: 'temp_c <>'\n"
        "  validate: [{field: nope, min: 1}]\n"
        "storage: {rollups: {by: [temp_c]}}\n")
    assert main(["deploy", "bad.yaml"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: invalid pipeline spec (6 problems):", lines
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "id", "hot_records", "mapping.fields.temp_f.expr", "mapping.filter", "mapping.validate.0.field",
        "storage.rollups.by.0"]
    assert "the end of the expression" not in lines[4] and "ends where a value was expected" in lines[4]
