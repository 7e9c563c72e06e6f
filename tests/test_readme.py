"""The README is the front door: its two commands must be what CI and users actually run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(python3 -m venv[^\n]+)\n```", text)


def test_readme_has_a_run_and_a_test_command() -> None:
    run, test = _commands()[:2]
    assert run.endswith("dash-ray up --demo")
    assert test.endswith("pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test = _commands()[1]
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in lines


def test_the_spec_in_the_readme_is_valid() -> None:
    from dash_ray.mapping import compile_mapping
    from dash_ray.spec import load_spec

    text = (ROOT / "README.md").read_text()
    block = text.split("## Pipeline specs", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = load_spec(block)
    compile_mapping(spec.mapping)
    assert spec.id == "weather"


def _python_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", part, flags=re.DOTALL)


@pytest.mark.ray
def test_the_sdk_example_runs_as_printed(platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The README's SDK snippet as printed, run from a folder laid out as after `dash-ray up`
    (a token file with its newline, configs/weather.yaml); `connect()` finds the platform by
    `$DASH_URL` (in a real folder, by `.dash/run.json`). Run twice: first it creates the
    pipeline (the secret comes back), then it finds it deployed (the snippet rotates the
    secret instead); the second run's records, identical to the first's, are stored again.
    The query prints what was just ingested (issue 22: it printed [])."""
    [snippet, *_] = _python_blocks("Python SDK")
    (tmp_path / ".dash").mkdir()
    (tmp_path / ".dash" / "admin.token").write_text(platform.token + "\n")
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "weather.yaml", tmp_path / "configs" / "weather.yaml")
    monkeypatch.chdir(tmp_path)
    for name in ("DASH_HOME", "DASH_TOKEN", "DASH_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DASH_URL", platform.url)
    try:
        for run in (1, 2):
            exec(compile(snippet, "README.md", "exec"), {"__name__": f"readme_{run}"})  # the README's own code
            printed = capsys.readouterr().out.splitlines()
            assert printed[0] == f"2 {2 * run}"  # accepted, last_seq
            assert "'device': 'station-1'" in printed[1]
            assert printed[2] in ("starting", "running")
            assert printed[3] == ("[{'bucket': '2026-05-01T12:00:00Z', 'device': 'station-1', 'avg_temp_c': 21.5}, "
                                  "{'bucket': '2026-05-01T12:00:00Z', 'device': 'station-2', 'avg_temp_c': 19.0}]")
    finally:
        platform.client.delete("weather", purge=True)


@pytest.mark.ray
def test_the_replay_example_replays_what_it_says(platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The README's replay snippet, run as printed (the platform's URL for the default one)
    after the SDK snippet stored its two readings of May 1st 2026 and a new version of the
    mapping was deployed: it replays those two, and their rows show the new mapping."""
    [sdk, *_] = _python_blocks("Python SDK")
    [snippet] = _python_blocks("Replay")
    assert 'start="2026-05-01", end="2026-05-02"' in snippet
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "weather.yaml", tmp_path / "configs" / "weather.yaml")
    monkeypatch.chdir(tmp_path)
    for name in ("DASH_HOME", "DASH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DASH_URL", platform.url)
    monkeypatch.setenv("DASH_ADMIN_TOKEN", platform.token)
    try:
        exec(compile(sdk, "README.md", "exec"), {"__name__": "sdk"})  # the README's own code
        platform.wait_for(lambda: platform.client.get("weather").counters.get("stored_seq") == 2, what="stored")
        fixed = (tmp_path / "configs" / "weather.yaml").read_text().replace('"temp_c * 9 / 5 + 32"', '"temp_c * 2"')
        assert fixed != (tmp_path / "configs" / "weather.yaml").read_text()
        (tmp_path / "fixed.yaml").write_text(fixed)
        platform.client.deploy(str(tmp_path / "fixed.yaml"))
        platform.wait_for(lambda: platform.client.get("weather").status == "running", what="the new version")
        capsys.readouterr()
        exec(compile(snippet, "README.md", "exec"), {"__name__": "replay"})
        printed = capsys.readouterr().out.splitlines()
        assert printed[:2] == ["done 2 2", "[]"], printed
        rows = platform.client.query("weather", start="2026-05-01", end="2026-05-02", fields=["temp_c", "temp_f"])
        assert [(r["temp_c"], r["temp_f"]) for r in rows] == [(21.5, 43.0), (19.0, 38.0)]
    finally:
        platform.client.delete("weather", purge=True)


def _cli_table() -> list[str]:
    text = (ROOT / "README.md").read_text()
    part = text.split("## The CLI", 1)[1].split("\n## ", 1)[0]
    return [line.split(" | ", 1)[0] for line in part.splitlines() if line.startswith("| `")]


def test_the_cli_table_names_every_command_and_option() -> None:
    """Every command `dash-ray` has, with each of its options, is in the README's table
    (issue 22: `tail`, `query --order`, `tail --after/--last` were missing)."""
    import argparse

    from dash_ray.cli.commandline import build_parser

    rows = _cli_table()

    def commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    nested = commands(sub, f"{prefix}{name} ")
                    found += nested or [(f"{prefix}{name}", sub)]
        return found

    missing = []
    for name, parser in commands(build_parser(), ""):
        row = next((r for r in rows if f"`{name} " in r or f"`{name}`" in r), None)
        if row is None:
            missing.append(name)
            continue
        usage = row.split(f"`{name}", 1)[1].split("`,", 1)[0]
        missing += [f"{name} {option}" for action in parser._actions for option in action.option_strings
                    if option.startswith("--") and option != "--help" and option not in usage]
    assert missing == []


def test_the_readme_names_each_prerequisite_ci_installs_with_its_install_command() -> None:
    """Everything `.ci/run` installs beyond pip is named in "Test it" with the command that
    installs it, so the test command works on a machine where `.ci/run` did not run."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Test it", 1)[1].split("\n## ", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text()
    packages = [p for line in re.findall(r"apt-get install -y -qq ([^\n]+)", ci) for p in line.split()]
    assert {"postgresql", "chromium"} <= set(packages)
    installs = re.findall(r"`sudo apt-get install -y ([^`&]+)", section)
    named = {p for line in installs for p in line.split()}
    assert set(packages) <= named, f"not named with their install command in 'Test it': {set(packages) - named}"
    assert "createdb test" in section and "DASH_TEST_PG_DSN" in section and "DASH_TEST_CHROMIUM" in section
