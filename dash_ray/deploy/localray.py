"""A local Ray instance that `dash-ray up` starts and `dash-ray down` stops: one head node
carrying both roles, started as its own process group, recorded in `$DASH_HOME/run.json`
(with the platform's URL once it is up: the run file is how the CLI finds a running Dash).

Loopback only: `ray start --node-ip-address=127.0.0.1` alone is not enough, because Ray 2.60
rewrites a loopback address to the machine's outward IP (`services.resolve_ip_for_localhost`
→ `get_node_ip_address`) on a machine with more than one address, and then the GCS, raylet and
workers advertise (and the driver dials) e.g. 192.0.2.2. Ray keeps loopback only where it
believes clusters are unsupported (`ray_constants.ENABLE_RAY_CLUSTER`, from
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`): that switch is turned off for the instance and for the
driver that joins it (`use_loopback`), so every address Ray advertises is 127.0.0.1.

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
from dataclasses import fields as dataclass_fields
from pathlib import Path

from dash_ray.settings import BOTH_ROLES, ROLE_LABEL

__all__ = [
    "LocalRay",
    "RunInfo",
    "enable_ray_auth",
    "ensure_not_running",
    "forget_platform",
    "free_port",
    "instance_pids",
    "read_platform",
    "read_run_file",
    "record_platform",
    "start_local_ray",
    "stop_local_ray",
    "use_loopback",
]

RUN_FILE = "run.json"
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


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
    """Make Ray in this process (and the processes it starts) keep 127.0.0.1 as the node
    address instead of replacing it with the machine's outward IP. For a driver of a local
    instance only: a driver joining a real cluster must advertise its reachable address."""
    os.environ[_LOOPBACK_ENV] = "0"
    from ray._private import ray_constants  # read at import; set it in case ray is imported

    ray_constants.ENABLE_RAY_CLUSTER = False


@dataclass(frozen=True)
class RunInfo:
    """A running platform as `up` recorded it: where its API is, the Ray address it runs on,
    and the local Ray instance (None when it joined a cluster)."""

    url: str | None
    ray_address: str | None
    local: LocalRay | None

    def alive(self) -> bool:
        return self.local.alive() if self.local is not None else True


def _temp_dir(home: Path) -> Path:
    # Short and per-home: Ray puts unix sockets under it (108-byte path limit).
    digest = hashlib.sha1(str(home).encode()).hexdigest()[:10]
    return Path("/tmp") / f"dash-ray-{digest}"


def _run_data(home: str | Path) -> dict:
    try:
        data = json.loads((Path(home) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_run_file(home: str | Path) -> LocalRay | None:
    """The local Ray instance started for `home`, or None."""
    data = _run_data(home)
    try:
        return LocalRay(**{f.name: data[f.name] for f in dataclass_fields(LocalRay)})
    except (KeyError, TypeError):
        return None


def read_platform(home: str | Path) -> RunInfo | None:
    """The platform `up` recorded for `home` (None when there is no run file)."""
    data = _run_data(home)
    if not data:
        return None
    return RunInfo(url=data.get("url"), ray_address=data.get("ray_address") or data.get("address"),
                   local=read_run_file(home))


def record_platform(home: str | Path, *, url: str, ray_address: str) -> None:
    """Add the platform's URL and Ray address to the run file (made when there is none,
    as when the platform joined a cluster). Written whole, then renamed: never half a file."""
    path = Path(home) / RUN_FILE
    data = {**_run_data(home), "url": url, "ray_address": ray_address}
    tmp = path.with_name(RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def forget_platform(home: str | Path) -> None:
    (Path(home) / RUN_FILE).unlink(missing_ok=True)


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
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={free_port()}",
        "--disable-usage-stats",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    log_file = home / "logs" / "ray.log"
    enable_ray_auth()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", _LOOPBACK_ENV: "0"}
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


def instance_pids(running: LocalRay) -> list[int]:
    """The live processes of a running instance (see `_stragglers`)."""
    return _stragglers(running.temp_dir, running.pid)


def stop_local_ray(home: str | Path, *, timeout_s: float = 1.5) -> bool:
    """Stop the instance recorded for `home`: SIGTERM to its process group, SIGKILL to what
    is left after `timeout_s` (some Ray processes ignore SIGTERM, and nothing acknowledged
    depends on a clean exit: the write-ahead logs are synced before each 202); then remove its
    temp folder and run file. True when there was one. Idempotent."""
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

