"""The README is the front door: its two commands must be what CI and users actually run."""

from __future__ import annotations

import re
from pathlib import Path

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
