"""A local Ray instance that `dash-ray up` starts and `dash-ray down` stops: one head node
carrying both roles, started as its own process group, recorded in `$DASH_HOME/run.json`.

Stopping touches only what was started here: the process group of the recorded `ray start
--block` process and any process still using this instance's temp folder. Never `ray stop`,
which would kill every Ray instance on the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dash_ray.settings import BOTH_ROLES, ROLE_LABEL

__all__ = ["LocalRay", "enable_ray_auth", "use_loopback", "ensure_not_running", "free_port", "read_run_file", "start_local_ray", "stop_local_ray"]

RUN_FILE = "run.json"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class LocalRay:
    pid: int
    address: str
    temp_dir: str
    log_file: str
    started_at: float

    def alive(self) -> bool:
        return _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(OSError):
        if _stat_fields(Path(f"/proc/{pid}"))[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _stat_fields(proc: Path) -> list[str]:
    """The fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp, ..."""
    return (proc / "stat").read_text().rsplit(")", 1)[1].split()


def enable_ray_auth() -> None:
    """Use Ray's token authentication in this process and the ones it starts, creating the
    token (`~/.ray/auth_token`) when there is none, unless `RAY_AUTH_MODE` says otherwise.
    Ray 2.60 turns it on for a new `ray.init()` but not for a driver joining `ray start`."""
    from ray._private.authentication.authentication_token_setup import (
        generate_and_save_token,
        maybe_enable_token_auth_if_token_available,
    )
    from ray._raylet import AuthenticationTokenLoader

    if os.environ.get("RAY_AUTH_MODE") is None and not AuthenticationTokenLoader.instance().has_token(
            ignore_auth_mode=True):
        generate_and_save_token()
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def use_loopback() -> None:
    """Make this process's Ray connect to a loopback address as given. Ray rewrites
    127.0.0.1 in an address to the machine's outward IP (`resolve_ip_for_localhost`), so on a
    machine with another interface a driver joining a local instance bound to loopback looks
    for it at the other address and fails ("Failed to connect to Ray cluster at <ip>"). Ray
    skips the rewrite where multi-node clusters are off, the switch read here (its
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`): a local instance is one node anyway."""
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _temp_dir(home: Path) -> Path:
    # Short and per-home: Ray puts unix sockets under it (108-byte path limit).
    digest = hashlib.sha1(str(home).encode()).hexdigest()[:10]
    return Path("/tmp") / f"dash-ray-{digest}"


def read_run_file(home: str | Path) -> LocalRay | None:
    path = Path(home) / RUN_FILE
    try:
        return LocalRay(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def ensure_not_running(home: str | Path) -> None:
    """Raise RuntimeError when an instance started for `home` is still running. When one died
    without `down` (a crash, a power cut), clear the processes and temp folder it left."""
    existing = read_run_file(home)
    if existing is None:
        return
    if existing.alive():
        raise RuntimeError(f"Dash is already running from {home} (Ray pid {existing.pid}); "
                           "run `dash-ray down` first")
    stop_local_ray(home)


def _ray_command() -> list[str]:
    script = Path(sys.executable).with_name("ray")
    if script.exists():
        return [str(script)]
    found = shutil.which("ray")
    if found is None:
        raise RuntimeError("the `ray` command is not installed next to this Python; pip install 'ray[serve]'")
    return [found]


def start_local_ray(home: str | Path, *, num_cpus: int | None = None, timeout_s: float = 90.0) -> LocalRay:
    """Start a Ray head node for this `home` and wait until it takes connections."""
    home = Path(home)
    ensure_not_running(home)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    temp_dir = _temp_dir(home)
    shutil.rmtree(temp_dir, ignore_errors=True)
    port = free_port()
    command = _ray_command() + [
        "start", "--head", "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={num_cpus or os.cpu_count() or 2}",
        f"--labels={ROLE_LABEL}={BOTH_ROLES}",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    log_file = home / "logs" / "ray.log"
    enable_ray_auth()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    with open(log_file, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=env, cwd=home)
    running = LocalRay(pid=process.pid, address=f"127.0.0.1:{port}", temp_dir=str(temp_dir),
                       log_file=str(log_file), started_at=time.time())
    (home / RUN_FILE).write_text(json.dumps(asdict(running)))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stop_local_ray(home)
            raise RuntimeError(f"Ray failed to start (exit {process.returncode}); see {log_file}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return running
        time.sleep(0.2)
    stop_local_ray(home)
    raise RuntimeError(f"Ray did not start within {timeout_s:.0f} s; see {log_file}")


def _stragglers(temp_dir: str, pgid: int) -> list[int]:
    """Live processes of the instance: in its process group, or naming or holding open its temp
    folder (Ray renames some processes, e.g. `ray::DashboardAgent`, so the command line alone
    does not find them all, and a process whose group leader died keeps the group id)."""
    marker = temp_dir.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(entry)
            if fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            # The group id alone could be a reused pid's: it must also be a Ray process.
            if marker in cmdline or (int(fields[2]) == pgid and b"ray" in cmdline):
                found.append(int(entry.name))
                continue
            if any(os.readlink(fd).startswith(temp_dir) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
    return found


def stop_local_ray(home: str | Path, *, timeout_s: float = 20.0) -> bool:
    """Stop the instance recorded for `home`, wait for its processes to end, remove its temp
    folder and run file. True when there was one. Idempotent."""
    home = Path(home)
    running = read_run_file(home)
    if running is None:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _stragglers(running.temp_dir, running.pid):
        time.sleep(0.2)
    end = time.monotonic() + 10
    while time.monotonic() < end and (left := _stragglers(running.temp_dir, running.pid)):
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(running.pid, os.WNOHANG)
    shutil.rmtree(running.temp_dir, ignore_errors=True)
    (home / RUN_FILE).unlink(missing_ok=True)
    return True

