"""Fault injection for the logs' tests: pause the file log's writer thread inside a system call,
make a write fail part-way, record which directories were fsync'd (all of it wraps the real `os`
calls on a real file system), and cut the network between a replicated log and its server (a
real TCP relay on loopback). Nothing is mocked out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dash_ray.log.file import WriteAheadLog
from tests.conftest import free_port
from tests.waiting import wait_for


def abandon(wal: WriteAheadLog) -> None:
    """Stop a file log as a crash would: appends and trims not yet taken by the writer are
    dropped (their futures never resolve), the group it is writing, if any, finishes as it
    would have before the power went, and no clean close runs. The writer closes its fd."""
    with wal._lock:
        wal._pending.clear()
        wal._trim_waiters.clear()
        wal._trim_to = None
        wal._state = "closed"
        wal._lock.notify_all()
    if wal._thread is not None:
        wal._thread.join(10)
        assert not wal._thread.is_alive(), "the writer did not stop"


def _in_writer() -> bool:
    return threading.current_thread().name.startswith("wal:")


class WriterGate:
    """Once armed, the log's writer thread stops inside its next `os.<call>` (after the
    arguments, the fd among them, were evaluated) until `release()`. Other threads pass."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._armed: str | None = None
        self._reached = threading.Event()
        self._go = threading.Event()
        for name in ("write", "fdatasync"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))

    def _wrap(self, name, real):
        def call(*args):
            if self._armed == name and _in_writer():
                self._armed = None
                self._reached.set()
                self._go.wait(10)  # never hang the suite if a test forgets to release
            return real(*args)
        return call

    def arm(self, call: str = "write") -> None:
        self._reached.clear()
        self._go.clear()
        self._armed = call

    async def reached(self) -> None:
        assert await asyncio.to_thread(self._reached.wait, 5), "the writer never reached the gate"

    def release(self) -> None:
        self._go.set()


@pytest.fixture
def writer_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[WriterGate]:
    gate = WriterGate(monkeypatch)
    yield gate
    gate.release()


class FailingWrites:
    """Once armed, the writer's `os.write`s pass `after` calls through, then one writes half
    its bytes for real and the next fails with ENOSPC: a disk filling up mid-group."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._state = "off"
        self._after = 0
        real = os.write

        def write(fd, data):
            if self._state == "off" or not _in_writer():
                return real(fd, data)
            if self._after:
                self._after -= 1
                return real(fd, data)
            if self._state == "armed" and len(data) > 1:
                self._state = "half"
                return real(fd, memoryview(data)[: len(data) // 2])
            self._state = "off"
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

        monkeypatch.setattr(os, "write", write)

    def arm(self, *, after: int = 0) -> None:
        self._after = after
        self._state = "armed"


@pytest.fixture
def failing_writes(monkeypatch: pytest.MonkeyPatch) -> FailingWrites:
    return FailingWrites(monkeypatch)


class DirSyncs:
    """Records, in order, the path of every directory passed to `os.fsync` and of every file
    removed with `os.unlink`, as ("fsync", path) / ("unlink", path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        real_fsync, real_unlink = os.fsync, os.unlink

        def fsync(fd):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            return real_fsync(fd)

        def unlink(path, *args, **kwargs):
            self.events.append(("unlink", os.path.abspath(path)))
            return real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "unlink", unlink)

    @property
    def synced(self) -> set[str]:
        return {path for kind, path in self.events if kind == "fsync"}


@pytest.fixture
def dir_syncs(monkeypatch: pytest.MonkeyPatch) -> DirSyncs:
    return DirSyncs(monkeypatch)


class Proxy:
    """A TCP relay on loopback in front of a real server. `cut()` closes every connection open
    through it (each side sees the connection end); `stall()` silently drops whatever either
    side sends on them from then on (a partition: nothing arrives, nothing says so); `hold()`
    keeps what they send until the function it returns is called, then delivers it in order
    (a partition that heals). Connections made afterwards pass. One thread per direction;
    `close()` ends all."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._stalled: set[socket.socket] = set()
        self._held: dict[socket.socket, list[bytes]] = {}
        self._peer: dict[socket.socket, socket.socket] = {}
        self._threads = [threading.Thread(target=self._accept, name="proxy-accept", daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
                self._peer.update({client: upstream, upstream: client})
                for src, dst in ((client, upstream), (upstream, client)):
                    thread = threading.Thread(target=self._pump, args=(src, dst), name="proxy-pump", daemon=True)
                    self._threads.append(thread)
                    thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                with self._lock:
                    if src in self._stalled:
                        continue
                    if src in self._held:
                        self._held[src].append(data)
                        continue
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            doomed, self._open = self._open, []
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stall(self) -> None:
        with self._lock:
            self._stalled.update(self._open)

    def hold(self) -> Callable[[], None]:
        with self._lock:
            self._held.update({sock: [] for sock in self._open})

        def release() -> None:
            with self._lock:
                held, self._held = self._held, {}
                for src, chunks in held.items():
                    with contextlib.suppress(OSError):
                        self._peer[src].sendall(b"".join(chunks))

        return release

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(5)
        with self._lock:
            for sock in self._open:
                sock.close()


@pytest.fixture(scope="session")
def nats_proxy() -> Iterator[Proxy]:
    """A relay in front of the NATS server at 127.0.0.1:4222 (which must run, with JetStream)."""
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"NATS with JetStream is required at 127.0.0.1:4222: {exc}")
    proxy = Proxy("127.0.0.1", 4222)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def pg_proxy() -> Iterator[Proxy]:
    """A relay in front of PostgreSQL at 127.0.0.1:5432."""
    proxy = Proxy("127.0.0.1", 5432)
    yield proxy
    proxy.close()


@dataclasses.dataclass
class NatsCluster:
    urls: list[str]
    proxy: Proxy  # in front of the first server


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three nats-server processes with JetStream in one cluster on loopback (free ports, a
    store each), for streams of three replicas as production runs them; stopped afterwards."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.access(binary, os.X_OK):
        pytest.fail("nats-server is required (apt-get install nats-server) for the R3 log tests")
    root = tmp_path_factory.mktemp("nats-cluster")
    clients = [free_port() for _ in range(3)]
    routes = [free_port() for _ in range(3)]
    route_urls = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
    processes = []
    try:
        for i in range(3):
            config = root / f"n{i}.conf"
            config.write_text(f'server_name: n{i}\nlisten: 127.0.0.1:{clients[i]}\n'
                              f'jetstream {{ store_dir: "{root / f"store{i}"}" }}\n'
                              f'cluster {{ name: wal, listen: 127.0.0.1:{routes[i]}, routes: [{route_urls}] }}\n')
            log_file = open(root / f"n{i}.log", "wb")  # closed with the process
            processes.append((subprocess.Popen([binary, "-c", str(config)], stdout=log_file, stderr=log_file),
                              log_file))
        urls = [f"nats://127.0.0.1:{port}" for port in clients]
        _wait_for_jetstream(urls, processes=[p for p, _ in processes], root=root)
        proxy = Proxy("127.0.0.1", clients[0])
        yield NatsCluster(urls, proxy)
        proxy.close()
    finally:
        for process, log_file in processes:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log_file.close()


def _wait_for_jetstream(urls: list[str], *, processes: list[subprocess.Popen], root: Path) -> None:
    """Poll until the cluster has a JetStream meta leader and takes an R3 stream (30 s at most)."""
    import nats

    async def ready() -> bool:
        try:
            nc = await nats.connect(urls, connect_timeout=1, allow_reconnect=False)
        except Exception:  # noqa: BLE001 - not up yet
            return False
        try:
            js = nc.jetstream(timeout=2)
            await js.add_stream(name="WAL_READY", subjects=["wal.ready"], num_replicas=3)
            await js.delete_stream("WAL_READY")
            return True
        except Exception:  # noqa: BLE001 - no leader yet
            return False
        finally:
            await nc.close()

    def settled() -> str | None:
        if any(p.poll() is not None for p in processes):
            return "a server exited"
        return "ready" if asyncio.run(ready()) else None

    try:
        if wait_for(settled, timeout=30, what="a JetStream meta leader") == "ready":
            return
    except AssertionError:
        pass
    logs = "\n".join((root / f"n{i}.log").read_text(errors="replace")[-2000:] for i in range(3))
    pytest.fail(f"the NATS cluster did not come up with JetStream within 30 s:\n{logs}")
