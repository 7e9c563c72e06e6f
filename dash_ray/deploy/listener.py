"""The web port of a local instance, held by that platform alone: `up` binds and listens on it
before anything else starts, a small holder process keeps it for the platform's life, and each
web replica takes a copy of that one socket instead of binding the port itself.

Why not each replica binding with SO_REUSEPORT: Linux lets any socket of the same user join
such a group, so two platforms (or any program) on one port split its connections between
them; and `up` would check the port long before a replica binds it. Here the socket is bound
without SO_REUSEPORT, so no other socket of any user can bind the port while it is open, and
it is open from the check until the platform stops: through a replica's restart (connections
wait in the socket's queue meanwhile) and for every replica (`DASH_WEB_REPLICAS`), which all
accept from the same queue.

The holder is this file run as a script (`python -I listener.py ...`: standard library only,
so it starts in tens of ms). It hands the socket over a Unix socket in the instance's Ray temp
folder, to processes of its own user only (SO_PEERCRED), and exits when the process it
watches does: the `up` that started it, then the instance's `ray start` process. Its command
line names the home and URL, which is how a second `up` says who holds the port.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import selectors
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Holder", "hand_over", "holders", "listen_exclusively", "receive", "start_holder"]

BACKLOG = 4096
_SCRIPT = Path(__file__).resolve()
_READY = b"ready\n"


@dataclass(frozen=True)
class Holder:
    """A running holder: its pid, and the platform's home and URL from its command line."""

    pid: int
    home: str
    url: str


def listen_exclusively(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: one the OS picks) that no other socket can
    share. Raises RuntimeError naming the port and, when it can be found, who holds it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only lets connections of an earlier run in TIME_WAIT not count; without
        # SO_REUSEPORT no other socket may bind the port while this one listens.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise RuntimeError(_taken(host, port, exc)) from None
    return sock


def _taken(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    other = "set DASH_PORT (or --port) to another port, or to 0 for a free one"
    if exc.errno != errno.EADDRINUSE:
        return f"{where} ({exc.strerror}); {other}"
    for pid in _listening_pids(port):
        holder = _holder(pid)
        if holder is not None:
            return (f"{where}: Dash from DASH_HOME={holder.home} is using it (pid {pid}); stop it with "
                    f"`DASH_HOME={holder.home} dash-ray down`, or {other}")
        name = _read(Path(f"/proc/{pid}/cmdline")).replace(b"\0", b" ").decode(errors="replace").strip()
        return f"{where}: process {pid} ({name[:80]}) is using it; {other}"
    return f"{where} ({exc.strerror}); is something else using it? {other[0].upper()}{other[1:]}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _listening_pids(port: int) -> list[int]:
    """Processes with a TCP socket listening on `port` (any address), as far as /proc shows."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(Path(table)).decode().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and inodes:
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    found.append(int(entry.name))
    # A holder first: the replicas of its platform hold the same socket.
    return sorted(found, key=lambda pid: _holder(pid) is None)


def _holder(pid: int) -> Holder | None:
    args = [a.decode(errors="replace") for a in _read(Path(f"/proc/{pid}/cmdline")).split(b"\0")]
    if not any(a.endswith("dash_ray/deploy/listener.py") for a in args):
        return None
    values = dict(zip(args, args[1:], strict=False))  # pairs: each argument with the next
    if "--home" not in values or "--url" not in values:
        return None
    return Holder(pid=pid, home=values["--home"], url=values["--url"])


def holders() -> list[Holder]:
    """Every platform's holder running on this machine (that /proc lets this user see)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (holder := _holder(int(entry.name))) is not None:
            found.append(holder)
    return found


def start_holder(sock: socket.socket, *, path: str, home: str, url: str, watch: int, log_file: str,
                 timeout_s: float = 15.0) -> int:
    """Start the holder of `sock`, serving it at the Unix socket `path` while `watch` runs;
    returns its pid once it serves. The caller may close its own copy of `sock` then."""
    command = [sys.executable, "-I", str(_SCRIPT), "--fd", str(sock.fileno()), "--path", path,
               "--home", home, "--url", url, "--watch", str(watch)]
    with open(log_file, "ab") as log:
        process = subprocess.Popen(command, pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    assert process.stdout is not None
    with process.stdout, selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s) or process.stdout.readline() != _READY:
            process.kill()
            process.wait()
            raise RuntimeError(f"the holder of {url} did not start; see {log_file}")
    return process.pid


def _ask(path: str, request: bytes, *, timeout_s: float) -> tuple[bytes, list[int]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        try:
            conn.connect(path)
            conn.sendall(request)
            message, fds, _, _ = socket.recv_fds(conn, 64, 1)
        except OSError as exc:
            raise RuntimeError(f"the platform's port holder at {path} does not answer ({exc}); "
                               "restart Dash: `dash-ray down`, then `dash-ray up`") from None
    if message != b"ok\n":
        for fd in fds:
            os.close(fd)
        raise RuntimeError(f"the platform's port holder at {path} refused: {message!r}")
    return message, fds


def receive(path: str, *, timeout_s: float = 10.0) -> socket.socket:
    """The platform's listening socket, from its holder at `path` (for a web replica)."""
    _, fds = _ask(path, b"socket\n", timeout_s=timeout_s)
    if len(fds) != 1:
        raise RuntimeError(f"the platform's port holder at {path} sent no socket")
    return socket.socket(fileno=fds[0])


def hand_over(path: str, pid: int, *, timeout_s: float = 10.0) -> None:
    """Have the holder at `path` live as long as `pid` (the instance's `ray start` process)
    instead of the `up` that started it."""
    _ask(path, f"watch {pid}\n".encode(), timeout_s=timeout_s)


# -- the holder process ------------------------------------------------------------------------


def _serve(listening: socket.socket, path: str, watch: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, "request")
    watched = _watch(selector, watch, None)
    os.write(1, _READY)
    devnull = os.open(os.devnull, os.O_WRONLY)  # `up` stops reading: nothing more goes to its pipe
    os.dup2(devnull, 1)
    os.close(devnull)
    while watched is not None:
        for key, _ in selector.select():
            if key.data == "exited":
                return
            conn, _ = server.accept()
            with conn:
                watched = _answer(conn, listening, selector, watched)


def _watch(selector: selectors.BaseSelector, pid: int, previous: int | None) -> int | None:
    """Watch `pid` instead of `previous` (pidfds); None when it is already gone."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if previous is not None:
        selector.unregister(previous)
        os.close(previous)
    selector.register(pidfd, selectors.EVENT_READ, "exited")
    return pidfd


def _answer(conn: socket.socket, listening: socket.socket, selector: selectors.BaseSelector,
            watched: int | None) -> int | None:
    conn.settimeout(5.0)
    try:
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        request = conn.recv(64)
        if uid != os.getuid():
            conn.sendall(b"refused: not the platform's user\n")
        elif request == b"socket\n":
            socket.send_fds(conn, [b"ok\n"], [listening.fileno()])
        elif request.startswith(b"watch ") and request[6:-1].isdigit():
            watched = _watch(selector, int(request[6:-1]), watched)
            conn.sendall(b"ok\n")
        else:
            conn.sendall(b"refused: unknown request\n")
    except OSError as exc:
        print(f"holder: a request failed: {exc}", file=sys.stderr)
    return watched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hold a Dash platform's web port (see the module docstring).")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--watch", type=int, required=True)
    args = parser.parse_args(argv)
    listening = socket.socket(fileno=args.fd)
    try:
        _serve(listening, args.path, args.watch)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
