"""Fault injection for the file log's tests: pause its writer thread inside a system call, make
a write fail part-way, record which directories were fsync'd. All of it wraps the real `os`
calls on a real file system; nothing is mocked out."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
from collections.abc import Iterator

import pytest

from dash_ray.log.file import WriteAheadLog


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
