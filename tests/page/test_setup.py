"""The page tests need Chromium, which pip does not install: without it they fail, never skip,
at once (no platform is started for nothing) and saying how to install it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_without_chromium_every_page_test_fails_at_once_saying_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "DASH_TEST_CHROMIUM": str(tmp_path / "no-chromium")}
    env.pop("PYTEST_CURRENT_TEST", None)
    began = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                          "tests/page/test_live.py", "tests/page/test_dashboards.py",
                          f"--basetemp={tmp_path / 'run'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    took = time.monotonic() - began
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "skipped" not in out and " passed" not in out, out
    assert out.count("sudo apt-get install -y chromium") >= 2 and "DASH_TEST_CHROMIUM" in out, out
    assert f"the page tests need Chromium at {tmp_path / 'no-chromium'}" in out
    assert took < 60, f"took {took:.0f} s: a platform was started before the browser was checked"
