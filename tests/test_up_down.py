"""`dash-ray up` and `down` where other work runs (issue 22): one platform per port (a second
`up` on a port another Dash holds fails at once, naming that DASH_HOME, and starts nothing;
a restarted replica keeps the port its platform's own), `down` finds an instance whose
DASH_HOME is gone and names the home it looked at, and bad ports and settings are refused with
a message naming them instead of a traceback."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dash_ray.deploy.localray import instance_pids, read_run_file, temp_dir_for
from tests.conftest import dash, dash_popen, free_port, port_open, processes_using
from tests.waiting import wait_for

# Messages that must not reach a user of `up` and `down`: an invitation to turn Ray's
# authentication off, and Serve's notes about its own internals.
NOISE = ("RAY_AUTH_MODE=disabled", "opt out", "Connecting to existing Serve app", "Started Serve in namespace")


def _joins_with_reuseport(port: int) -> bool:
    """Whether a socket with SO_REUSEPORT (as any same-user program, or another Dash's replica,
    could make) can bind the port: it must not, while a platform holds it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _web_replicas(home: Path) -> list[int]:
    return [pid for pid in instance_pids(read_run_file(home))
            if b"ServeReplica:dash:Web" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.ray
def test_a_second_up_on_a_port_another_dash_holds_fails_at_once_and_starts_nothing(tmp_path: Path) -> None:
    first, second = tmp_path / "first" / ".dash", tmp_path / "second" / ".dash"
    second.parent.mkdir()
    port = free_port()
    # The first platform, with two web replicas, is started; the second `up` comes while the
    # first is still starting Ray, long before a replica of it serves.
    starting = dash_popen(first, port, "up", DASH_WEB_REPLICAS="2")
    try:
        wait_for(lambda: (first / "run.json").exists(), timeout=90, what="the first platform to start its Ray instance")
        began = time.monotonic()
        refused = dash(second, port, "up")
        took = time.monotonic() - began
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"127.0.0.1:{port}" in refused.stderr and f"DASH_HOME={first}" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert took < 15, f"the second up took {took:.1f} s to fail"
        assert not (second / "run.json").exists()
        assert not processes_using(str(temp_dir_for(second))) and not temp_dir_for(second).exists()

        out, err = starting.communicate(timeout=180)
        assert starting.returncode == 0 and "Dash is up" in out, out + err
        assert not [n for n in NOISE if n in out + err], out + err
        token = (first / "admin.token").read_text().strip()
        # Every request reaches the first platform (no second listener shares the port).
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {token}"},
                          timeout=30) as http:
            assert [http.get("/v1/pipelines").status_code for _ in range(40)] == [200] * 40
            assert not _joins_with_reuseport(port)

            # A replica that dies is replaced; the port stays this platform's throughout.
            replicas = wait_for(lambda: len(r := _web_replicas(first)) == 2 and r, timeout=90, what="two web replicas")
            os.kill(replicas[0], signal.SIGKILL)
            assert not _joins_with_reuseport(port)
            wait_for(lambda: len(r := _web_replicas(first)) == 2 and replicas[0] not in r, timeout=90,
                     what="the replica's replacement")
            assert not _joins_with_reuseport(port)
            assert [http.get("/v1/pipelines").status_code for _ in range(20)] == [200] * 20
        temp_dir = read_run_file(first).temp_dir
    finally:
        if starting.poll() is None:
            starting.kill()
            starting.wait()
        down = dash(first, port, "down", "--drain", "5")
        dash(second, port, "down")
    assert down.returncode == 0 and "Dash stopped" in down.stdout, down.stdout + down.stderr
    assert not [n for n in NOISE if n in down.stdout + down.stderr], down.stdout + down.stderr
    assert not port_open(port) and not processes_using(temp_dir) and not Path(temp_dir).exists()


@pytest.mark.ray
def test_down_stops_an_instance_whose_home_was_deleted(tmp_path: Path) -> None:
    home = tmp_path / ".dash"
    # Port 0: `up` takes a free port and says which.
    up = dash(home, 0, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        port = int(re.search(r"Dash is up at http://127\.0\.0\.1:(\d+) ", up.stdout).group(1))
        assert port != 0 and port_open(port)
        run = read_run_file(home)
        assert run is not None and f":{port}" in (home / "run.json").read_text()
        shutil.rmtree(home)

        began = time.monotonic()
        down = dash(home, 0, "down")
        took = time.monotonic() - began
    finally:
        if home.exists():
            dash(home, 0, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Dash stopped" in down.stdout and f"DASH_HOME={home}" in down.stdout, down.stdout
    assert "run.json" in down.stdout and re.search(r"\d+ processes", down.stdout), down.stdout
    # The stop itself, as `down` reports it, is bounded; the wall clock around it adds the CLI's
    # own start, 0.3 s quiet and 3 s or more when other work loads the machine.
    stopping = float(re.search(r"Dash stopped \(([\d.]+) s\)", down.stdout).group(1))
    assert stopping < 5.0 and took < 30, f"down took {took:.1f} s, {stopping:.1f} s of it stopping"
    assert not processes_using(run.temp_dir) and not Path(run.temp_dir).exists()
    assert not port_open(port)
    again = dash(home, 0, "down")
    assert again.returncode == 0 and f"Dash was not running for DASH_HOME={home}" in again.stdout, again.stdout


def test_down_names_the_home_it_looked_at(tmp_path: Path) -> None:
    home = tmp_path / "nowhere" / ".dash"
    home.parent.mkdir()
    down = dash(home, free_port(), "down")
    assert down.returncode == 0, down.stderr
    assert f"Dash was not running for DASH_HOME={home}" in down.stdout, down.stdout
    assert not home.exists()


@pytest.mark.parametrize(("args", "env", "says"), [
    (["--port", "99999"], {}, "--port must be a port number from 0 to 65535, not '99999'"),
    (["--port", "-1"], {}, "--port must be a port number from 0 to 65535, not '-1'"),
    ([], {"DASH_PORT": "abc"}, "DASH_PORT must be a port number from 0 to 65535, not 'abc'"),
    ([], {"DASH_PORT": "70000"}, "DASH_PORT must be a port number from 0 to 65535, not '70000'"),
    ([], {"DASH_WEB_REPLICAS": "two"}, "DASH_WEB_REPLICAS must be a whole number, not 'two'"),
    ([], {"DASH_RESTART_WINDOW_S": "1m"}, "DASH_RESTART_WINDOW_S must be a number, not '1m'"),
])
def test_a_bad_port_or_setting_is_refused_naming_it(tmp_path: Path, args: list[str], env: dict[str, str],
                                                    says: str) -> None:
    home = tmp_path / ".dash"
    refused = dash(home, 8000, "up", *args, **env)
    assert refused.returncode != 0
    assert says in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert not home.exists()  # refused before anything was made


def test_settings_name_the_variable_that_is_wrong() -> None:
    from dash_ray.settings import Settings

    with pytest.raises(ValueError, match="DASH_PORT must be a port number from 0 to 65535, not 'abc'"):
        Settings.from_env(env={"DASH_PORT": "abc"}, home="/nonexistent/dash")
    with pytest.raises(ValueError, match="DASH_MAX_RESTARTS must be a whole number, not '1.5'"):
        Settings.from_env(env={"DASH_MAX_RESTARTS": "1.5"}, home="/nonexistent/dash")
    assert Settings.from_env(env={"DASH_PORT": " 8100 "}, home="/nonexistent/dash").port == 8100
    assert Settings.from_env(env={"DASH_PORT": "0"}, home="/nonexistent/dash").port == 0


def test_a_free_port_on_a_cluster_is_refused(tmp_path: Path) -> None:
    """Port 0 means "pick one" for a local instance; on a cluster each web node would pick its
    own, so it is refused before joining."""
    refused = dash(tmp_path / ".dash", 0, "up", DASH_RAY_ADDRESS="127.0.0.1:1")
    assert refused.returncode == 1 and "DASH_PORT=0" in refused.stderr and "cluster" in refused.stderr, refused.stderr


def test_ray_auth_is_turned_on_without_an_invitation_to_turn_it_off(tmp_path: Path) -> None:
    """A process about to start or join a local instance uses Ray's token authentication,
    creating the token once (a second process keeps it), and logs nothing about opting out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)
    code = ("import os; from dash_ray.deploy.driver import enable_ray_auth; enable_ray_auth(); "
            "print(os.environ['RAY_AUTH_MODE'])")
    token = tmp_path / ".ray" / "auth_token"
    tokens = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and run.stdout.strip() == "token", run.stdout + run.stderr
        assert not [n for n in NOISE if n in run.stderr], run.stderr
        tokens.append(token.read_text())
    assert token.stat().st_mode & 0o777 == 0o600 and len(tokens[0]) == 64
    assert tokens[1] == tokens[0]
