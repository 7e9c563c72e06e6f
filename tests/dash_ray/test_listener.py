"""The web port held by one platform alone (dash_ray/deploy/listener.py), without Ray: no other
socket can bind it, not even with SO_REUSEPORT as another platform's replica would; the holder
hands its one socket to the platform's replicas, lives as long as the process it watches, and
a second platform asking for the port is told which DASH_HOME holds it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dash_ray.deploy.listener import hand_over, holders, listen_exclusively, receive, start_holder
from tests.waiting import wait_for


def _bind(port: int, *, reuseport: bool) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _reaped(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    if state == "Z":
        os.waitpid(pid, os.WNOHANG)
        return True
    return False


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process `pid` ends (and is reaped) within `timeout` seconds."""
    try:
        return wait_for(lambda: _reaped(pid), timeout=timeout, every=0.05, what=f"process {pid} to end")
    except AssertionError:
        return False


@pytest.fixture()
def watched() -> Iterator[subprocess.Popen]:
    """A process for the holder to watch (standing in for `up`, then `ray start`)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def test_the_port_is_the_platforms_alone_until_its_holder_exits(tmp_path: Path, watched: subprocess.Popen) -> None:
    sock = listen_exclusively("127.0.0.1", 0)
    port = sock.getsockname()[1]
    home = str(tmp_path / "a" / ".dash")
    path = str(tmp_path / "port.sock")
    holder = start_holder(sock, path=path, home=home, url=f"http://127.0.0.1:{port}", watch=watched.pid,
                          log_file=str(tmp_path / "holder.log"))
    sock.close()
    try:
        assert not _bind(port, reuseport=True) and not _bind(port, reuseport=False)
        # A second platform asking for the port is told whose it is, by its home.
        with pytest.raises(RuntimeError) as taken:
            listen_exclusively("127.0.0.1", port)
        assert str(taken.value).startswith(f"cannot listen on 127.0.0.1:{port}: Dash from DASH_HOME={home} is using it")
        assert any(h.pid == holder and h.home == home for h in holders())

        # Two replicas take the same socket; a connection is accepted by one of them.
        first, second = receive(path), receive(path)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = first.accept()
            conn.close()
        first.close()  # a replica going away leaves the port held
        assert not _bind(port, reuseport=True)
        second.close()
        assert not _bind(port, reuseport=True)

        # The holder lives as long as what it watches: here, a handed-over process.
        successor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        try:
            hand_over(path, successor.pid)
            watched.kill()
            watched.wait()
            assert not _gone(holder, timeout=0.5), "the holder followed the process it no longer watches"
        finally:
            successor.kill()
            successor.wait()
        assert _gone(holder), "the holder outlived the process it watches"
        assert _bind(port, reuseport=False), "the port stayed taken after the holder exited"
    finally:
        if not _gone(holder, timeout=0):
            os.kill(holder, 9)


def test_a_port_held_by_another_program_names_its_process() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        with pytest.raises(RuntimeError) as taken:
            listen_exclusively("127.0.0.1", port)
    message = str(taken.value)
    assert message.startswith(f"cannot listen on 127.0.0.1:{port}: process {os.getpid()} (")
    assert "set DASH_PORT (or --port) to another port, or to 0 for a free one" in message


def test_a_holder_refuses_an_unknown_request_and_answers_the_next(tmp_path: Path, watched: subprocess.Popen) -> None:
    sock = listen_exclusively("127.0.0.1", 0)
    path = str(tmp_path / "port.sock")
    holder = start_holder(sock, path=path, home="/h", url="http://127.0.0.1:1", watch=watched.pid,
                          log_file=str(tmp_path / "holder.log"))
    sock.close()
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(path)
            conn.sendall(b"give me everything\n")
            assert conn.recv(64).startswith(b"refused")
        receive(path).close()
    finally:
        watched.kill()
        watched.wait()
        assert _gone(holder), "the holder outlived the process it watches"
