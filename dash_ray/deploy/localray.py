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

The web port is held from before Ray starts until the instance stops, by a holder process of
the instance (`listener.py`); the web replicas serve on that one socket.

Stopping touches only what was started here: the process group of the recorded `ray start
--block` process and any process still using this instance's temp folder, which is named from
the home, so an instance whose home or run file is gone is still found by its processes.
Never `ray stop`, which would kill every Ray instance on the machine.
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
from typing import Any

from dash_ray.deploy.driver import LOOPBACK_ENV, enable_ray_auth, use_loopback
from dash_ray.deploy.listener import hand_over, start_holder
from dash_ray.settings import BOTH_ROLES, ROLE_LABEL

__all__ = [
    "LocalRay",
    "RunInfo",
    "Stopped",
    "enable_ray_auth",
    "ensure_not_running",
    "find_instance",
    "forget_platform",
    "free_port",
    "instance_pids",
    "read_platform",
    "read_run_file",
    "record_platform",
    "start_local_ray",
    "stop_instance",
    "stop_local_ray",
    "temp_dir_for",
    "use_loopback",
]

RUN_FILE = "run.json"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LocalRay:
    """A local instance: its `ray start --block` process (the leader of its process group; 0
    when not known), GCS address and temp folder, and the holder of its web port."""

    pid: int
    address: str
    temp_dir: str
    log_file: str
    started_at: float
    listener: str | None = None  # the holder's Unix socket, where web replicas take the port's socket
    holder_pid: int | None = None

    def alive(self) -> bool:
        return self.pid > 0 and _alive(self.pid)


@dataclass(frozen=True)
class Stopped:
    """What `stop_local_ray` stopped: how many processes were running, and whether the instance
    was found by them alone (its run file was gone)."""

    processes: int = 0
    temp_dir: str | None = None
    by_processes: bool = False


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


@dataclass(frozen=True)
class RunInfo:
    """A running platform as `up` recorded it: where its API is, the Ray address it runs on,
    and the local Ray instance (None when it joined a cluster)."""

    url: str | None
    ray_address: str | None
    local: LocalRay | None

    def alive(self) -> bool:
        return self.local.alive() if self.local is not None else True


def temp_dir_for(home: str | Path) -> Path:
    """The Ray temp folder of the instance started for `home`, named from it. In the system
    temp folder as Ray picks it (`RAY_TMPDIR`, else `TMPDIR` on Linux), or /tmp when that is
    too long: Ray puts Unix sockets some 85 bytes deep under it, and a path may have 107."""
    digest = hashlib.sha1(str(Path(home)).encode()).hexdigest()[:10]
    root = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None)
    if not root or len(root) > 22:
        root = "/tmp"
    return Path(root) / f"dash-ray-{digest}"


def _run_data(home: str | Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(home) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_run_file(home: str | Path) -> LocalRay | None:
    """The local Ray instance started for `home` as its run file records it, or None."""
    data = _run_data(home)
    known = {f.name for f in dataclass_fields(LocalRay)}
    try:
        return LocalRay(**{k: v for k, v in data.items() if k in known})
    except TypeError:  # a field missing: not a local instance's run file
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
    """Raise RuntimeError when an instance started for `home` is still running, with or
    without its run file. When one died without `down` (a crash, a power cut), clear the
    processes and temp folder it left."""
    existing = read_run_file(home)
    if existing is None:
        existing = find_instance(home)
        if existing is not None and existing.alive():
            raise RuntimeError(f"Dash is already running from {home} although its run.json is gone (Ray pid "
                               f"{existing.pid}); run `dash-ray down` first")
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


def start_local_ray(home: str | Path, *, port_socket: socket.socket | None = None, url: str = "",
                    num_cpus: int | None = None, timeout_s: float = 90.0) -> LocalRay:
    """Start a Ray head node for this `home` and wait until it takes connections. With
    `port_socket` (the web port, listening), a holder of the instance keeps it from now on
    (the caller may close its copy) and the web replicas take it from `LocalRay.listener`."""
    home = Path(home)
    ensure_not_running(home)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    temp_dir = temp_dir_for(home)
    shutil.rmtree(temp_dir, ignore_errors=True)
    temp_dir.mkdir(parents=True)
    listener = str(temp_dir / "port.sock") if port_socket is not None else None
    holder = None
    try:
        if port_socket is not None and listener is not None:
            # Until Ray runs, the holder lives as long as this process (an `up` that fails or
            # is interrupted lets go of the port with it).
            holder = start_holder(port_socket, path=listener, home=str(home), url=url, watch=os.getpid(),
                                  log_file=str(home / "logs" / "listener.log"))
        running = _start_head(home, temp_dir, num_cpus, listener, holder, timeout_s)
        if listener is not None:
            hand_over(listener, running.pid)
        return running
    except BaseException:
        if holder is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)
        stop_local_ray(home)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise


def _start_head(home: Path, temp_dir: Path, num_cpus: int | None, listener: str | None, holder: int | None,
                timeout_s: float) -> LocalRay:
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
        # Workers on ports the OS picks, not Ray's fixed 10002-19999 shared by every instance.
        "--min-worker-port=0", "--max-worker-port=0",
    ]
    log_file = home / "logs" / "ray.log"
    enable_ray_auth()
    # Serve's own HTTP proxy (DASH_INGRESS=serve) binds the port without SO_REUSEPORT, so no
    # other platform's proxy can share it.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", LOOPBACK_ENV: "0", "SERVE_SOCKET_REUSE_PORT_ENABLED": "0"}
    with open(log_file, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=env, cwd=home)
    running = LocalRay(pid=process.pid, address=f"127.0.0.1:{port}", temp_dir=str(temp_dir),
                       log_file=str(log_file), started_at=time.time(), listener=listener, holder_pid=holder)
    (home / RUN_FILE).write_text(json.dumps(asdict(running)))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Ray failed to start (exit {process.returncode}); see {log_file}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return running
        time.sleep(0.2)
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


def find_instance(home: str | Path) -> LocalRay | None:
    """The instance started for `home`, found by its processes (for when its run file is
    gone): they name or hold its temp folder, which is named from the home. Its `pid` is that
    of its `ray start` process, 0 when that is gone; None when no process of it runs."""
    temp_dir = str(temp_dir_for(home))
    pids = _stragglers(temp_dir, -1)
    if not pids:
        return None
    leader, address = 0, ""
    for pid in pids:
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            if "start" in args and "--head" in args and f"--temp-dir={temp_dir}" in args:
                leader = pid
                address = next((f"127.0.0.1:{a[7:]}" for a in args if a.startswith("--port=")), "")
    return LocalRay(pid=leader, address=address, temp_dir=temp_dir, log_file="", started_at=0.0)


def stop_instance(running: LocalRay, *, timeout_s: float = 1.5) -> int:
    """Stop every process of an instance: SIGTERM to its process group and to each process
    of it, SIGKILL to what is left after `timeout_s` (some Ray processes ignore SIGTERM, and
    nothing acknowledged depends on a clean exit: the write-ahead logs are synced before each
    202); then remove its temp folder. Returns how many processes were running. Idempotent."""
    found = _stragglers(running.temp_dir, running.pid)
    if running.pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.pid, signal.SIGTERM)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _stragglers(running.temp_dir, running.pid):
        time.sleep(0.2)
    end = time.monotonic() + 10
    while time.monotonic() < end and (left := _stragglers(running.temp_dir, running.pid)):
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    if running.pid > 0:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(running.pid, os.WNOHANG)
    shutil.rmtree(running.temp_dir, ignore_errors=True)
    return len(found)


def stop_local_ray(home: str | Path, *, timeout_s: float = 1.5) -> Stopped | None:
    """Stop the instance started for `home`: the one its run file records, else the one its
    processes show (`find_instance`); remove its temp folder and run file. None when there was
    none. Idempotent."""
    home = Path(home)
    running = read_run_file(home)
    by_processes = running is None
    if running is None:
        running = find_instance(home)
    if running is None:
        return None
    processes = stop_instance(running, timeout_s=timeout_s)
    (home / RUN_FILE).unlink(missing_ok=True)
    return Stopped(processes=processes, temp_dir=running.temp_dir, by_processes=by_processes)
