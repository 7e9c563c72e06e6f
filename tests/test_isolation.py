"""Two copies of the suite at once on one machine (issue 22): each keeps its temp folders, ports
and Ray instances to itself, both pass, and nothing of either is left running or on disk.

The copies share a temp root of their own (TMPDIR), as two sessions share /tmp: pytest's
numbered folders, the platforms' Ray temp folders and private PostgreSQL folders all land
there, so what either leaves behind shows. The second copy starts once the first one's
platform is up, so the first ends while the second still uses its folders."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
# A representative part: the session's platform (its fixture, with tmp_path in the tests that
# use it), the lake on a folder and on the S3 server, a `dash-ray` command in a subprocess.
SELECTION = ["tests/dash_ray/test_lake.py", "tests/serve_app/test_dashboards.py", "tests/test_readme.py",
             "tests/test_up_down.py::test_down_names_the_home_it_looked_at"]
MARK = "DASH_TEST_COPY"


def _carrying(mark: str) -> list[str]:
    """Live processes whose environment carries `mark` (every process a copy started does:
    pytest, `ray start` and every Ray process under it, the port holder)."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()[:100]!r}")
        except OSError:
            continue
    return found


def _wait_gone(mark: str, timeout: float = 10.0) -> None:
    wait_for(lambda: not _carrying(mark), timeout=timeout, what=f"no process left of copy {mark}")


def _platform_up(temp: Path) -> bool:
    return any(temp.glob("pytest-of-*/pytest-*/platform*/home/run.json"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_two_copies_of_the_suite_at_once_both_pass_and_leave_nothing_behind() -> None:
    # Short: Ray puts Unix sockets some 85 bytes deep under its temp folder.
    temp = Path(tempfile.mkdtemp(prefix="dr-", dir="/tmp"))
    marks = [uuid.uuid4().hex for _ in range(2)]
    copies: list[subprocess.Popen[str]] = []
    try:
        for n, mark in enumerate(marks):
            env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "PYTEST_DEBUG_TEMPROOT")}
            env.update({"TMPDIR": str(temp), MARK: mark})
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SELECTION]
            copies.append(subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT))
            if n == 0:
                wait_for(lambda: _platform_up(temp) or copies[0].poll() is not None, timeout=300, every=0.5,
                         what="the first copy's platform")
                assert copies[0].poll() is None, f"the first copy ended early:\n{copies[0].communicate()[0]}"
        outputs = [copy.communicate(timeout=1200)[0] for copy in copies]
        for copy, output in zip(copies, outputs, strict=True):
            assert copy.returncode == 0, output[-6000:]
        for mark in marks:
            _wait_gone(mark)
        left = sorted(str(p.relative_to(temp)) for p in temp.iterdir() if not p.name.startswith("pytest-of-"))
        assert left == [], f"a copy left temp folders behind: {left}"
        kept = [p for p in temp.glob("pytest-of-*/pytest-*") if p.is_dir() and any(p.iterdir())]
        assert kept == [], f"passing copies kept their pytest folders: {kept}"
    finally:
        for copy in copies:
            if copy.poll() is None:
                copy.kill()
                copy.wait()
        for mark in marks:  # never leave a leak of a failed run on the machine
            for line in _carrying(mark):
                try:
                    os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(temp, ignore_errors=True)
