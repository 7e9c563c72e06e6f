"""The README is the front door: its two commands must be what CI and users actually run."""

from __future__ import annotations

import re
import shutil
import time
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
    """The README's SDK snippet, run from a folder laid out as after `dash-ray up` (a token
    file with its newline, configs/weather.yaml). The one change: the platform's URL for
    the default one. Run twice: first it creates the pipeline (the secret comes back), then
    it finds it deployed (the snippet rotates the secret instead)."""
    [snippet] = _python_blocks("Python SDK")
    assert 'connect("http://127.0.0.1:8000"' in snippet
    code = snippet.replace("http://127.0.0.1:8000", platform.url)
    (tmp_path / ".dash").mkdir()
    (tmp_path / ".dash" / "admin.token").write_text(platform.token + "\n")
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "weather.yaml", tmp_path / "configs" / "weather.yaml")
    monkeypatch.chdir(tmp_path)
    try:
        for run in (1, 2):
            # The same body signed in the same second is a replay (counted once): a second apart.
            time.sleep(1.1 if run == 2 else 0)
            exec(compile(code, "README.md", "exec"), {"__name__": f"readme_{run}"})  # noqa: S102 - the README's own code
            printed = capsys.readouterr().out.splitlines()
            assert printed[0] == f"2 {2 * run}"  # accepted, last_seq
            assert "'device': 'station-1'" in printed[1]
            assert printed[2] in ("starting", "running")
    finally:
        platform.client.delete("weather", purge=True)


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
