"""The write-ahead log of one pipeline: append with group commit, recover, trim.

An entry is `(key, data)`; keys never decrease (the pipeline uses the last sequence number of
the batch). The log is a directory of segment files `<n>.wal`, each a run of frames:

    magic u32 | length u32 | key u64 | crc32(key, data) u32 | data

Guarantees:
- `append(...)` resolves only after the entry is written and `fdatasync`'d; entries appended
  while a sync is running share the next one (group commit), so concurrent appenders pay for
  one sync between them. The event loop never blocks on the disk: a writer thread does it.
- Entries are made durable, and recovered by `open()`, in append order.
- A crash can leave a torn frame at the end of the last segment; `open()` cuts it off (those
  bytes were never acknowledged). Damage anywhere else is `WalCorruptError`: recovery refuses
  to guess rather than silently dropping acknowledged data.
- After a failed write the log is truncated back to its last good frame and the pending
  appends fail; nothing is acknowledged that did not reach the disk.
Not guaranteed: anything on a disk that lies about fsync.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dash_ray.errors import WalCorruptError
from dash_ray.log.base import Entry, LogStats

__all__ = ["WriteAheadLog"]

log = logging.getLogger(__name__)

_MAGIC = 0xDA5B_10C1
_FRAME = struct.Struct("<IIQI")
_KEY = struct.Struct("<Q")
_SUFFIX = ".wal"


@dataclass
class _Segment:
    number: int
    path: Path
    size: int = 0
    max_key: int | None = None


def _crc(key: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(_KEY.pack(key)))


def _frames(buf: bytes) -> Iterator[tuple[int, Entry | None, str | None]]:
    """(offset, entry, problem) for each frame; stops at the first problem."""
    offset = 0
    end = len(buf)
    while offset < end:
        if end - offset < _FRAME.size:
            yield offset, None, "incomplete frame header"
            return
        magic, length, key, crc = _FRAME.unpack_from(buf, offset)
        if magic != _MAGIC:
            yield offset, None, "bad magic"
            return
        start = offset + _FRAME.size
        if start + length > end:
            yield offset, None, "frame runs past the end of the file"
            return
        data = bytes(buf[start:start + length])
        if _crc(key, data) != crc:
            yield offset, None, "checksum mismatch"
            return
        yield offset, Entry(key, data), None
        offset = start + length


class WriteAheadLog:
    """Append-only, group-committed log in one directory (which must hold only this log)."""

    def __init__(self, directory: str | Path, *, segment_bytes: int = 64 * 2**20, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.stats = LogStats()
        self._state: Literal["new", "open", "closed", "failed"] = "new"
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._lock = threading.Condition()
        self._pending: list[tuple[int, bytes, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._last_key = -1

    @property
    def state(self) -> str:
        return self._state

    # -- open / recover --------------------------------------------------------------------

    def open(self) -> list[Entry]:
        """Recover: every entry still in the log, in order. Cuts a torn tail; raises
        WalCorruptError for damage elsewhere. Then the log accepts appends."""
        if self._state != "new":
            raise RuntimeError(f"log is {self._state}")
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = sorted(self.directory.glob(f"*{_SUFFIX}"), key=lambda p: int(p.stem))
        entries: list[Entry] = []
        for i, path in enumerate(paths):
            segment = _Segment(int(path.stem), path)
            buf = path.read_bytes()
            good = 0
            for offset, entry, problem in _frames(buf):
                if problem is not None:
                    if i != len(paths) - 1:
                        raise WalCorruptError(f"{path}: {problem} at byte {offset}; the log is damaged")
                    dropped = len(buf) - offset
                    log.warning("%s: cut %d byte(s) of torn tail (%s)", path, dropped, problem)
                    self.stats.truncated_bytes += dropped
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                        os.fsync(f.fileno())
                    break
                assert entry is not None
                if entry.key < self._last_key:
                    raise WalCorruptError(f"{path}: key {entry.key} after {self._last_key} at byte {offset}")
                entries.append(entry)
                self._last_key = entry.key
                segment.max_key = entry.key
                good = offset + _FRAME.size + len(entry.data)
            segment.size = good
            self._segments.append(segment)
        if not self._segments:
            self._new_segment(1)
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._state = "open"
        self.stats.last_key = max(self._last_key, 0)
        self._refresh_stats()
        self._thread = threading.Thread(target=self._writer, name=f"wal:{self.directory.name}", daemon=True)
        self._thread.start()
        return entries

    def _new_segment(self, number: int) -> _Segment:
        segment = _Segment(number, self.directory / f"{number:012d}{_SUFFIX}")
        fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        self._sync_dir()
        self._segments.append(segment)
        return segment

    def _sync_dir(self) -> None:
        if not self.fsync:
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _refresh_stats(self) -> None:
        self.stats.segments = len(self._segments)
        self.stats.bytes = sum(s.size for s in self._segments)

    # -- append ----------------------------------------------------------------------------

    def append(self, key: int, data: bytes) -> asyncio.Future[None]:
        """Queue an entry now (so appends keep call order) and return a future that
        resolves once it is durable, or fails with the write error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "open":
                raise RuntimeError(f"log is {self._state}: {self._failure!r}" if self._failure else f"log is {self._state}")
            if key < self._last_key:
                raise ValueError(f"log keys must not decrease: {key} after {self._last_key}")
            self._last_key = key
            self._pending.append((key, data, loop, future))
            self._lock.notify()
        return future

    def _writer(self) -> None:
        while True:
            with self._lock:
                while not self._pending and self._state == "open":
                    self._lock.wait()
                group, self._pending = self._pending, []
                if not group and self._state != "open":
                    return
            error: BaseException | None = None
            try:
                self._write_group(group)
            except BaseException as exc:  # noqa: BLE001 - reported to every waiter
                error = exc
                log.exception("write-ahead log %s: write failed", self.directory)
                with self._lock:
                    self._failure = exc
                    self._state = "failed"
                    failed, self._pending = self._pending, []
                group += failed
            for _, _, loop, future in group:
                try:
                    loop.call_soon_threadsafe(_settle, future, error)
                except RuntimeError:
                    pass  # the loop is gone; nobody waits any more
            if error is not None:
                return

    def _write_group(self, group: list[tuple[int, bytes, asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
        chunks: list[bytes] = []
        size = 0
        max_key = None
        for key, data, _, _ in group:
            frame = _FRAME.pack(_MAGIC, len(data), key, _crc(key, data)) + data
            segment = self._segments[-1]
            if segment.size + size + len(frame) > self.segment_bytes and (segment.size + size) > 0:
                self._flush(chunks, size, max_key)
                chunks, size, max_key = [], 0, None
                self._roll()
            chunks.append(frame)
            size += len(frame)
            max_key = key
        self._flush(chunks, size, max_key)
        if self.fsync:
            assert self._fd is not None
            os.fdatasync(self._fd)
            self.stats.fsyncs += 1
        self.stats.appended += len(group)
        self.stats.last_key = group[-1][0]

    def _flush(self, chunks: list[bytes], size: int, max_key: int | None) -> None:
        if not chunks:
            return
        assert self._fd is not None
        segment = self._segments[-1]
        data = b"".join(chunks)
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except BaseException:
            # Leave only whole frames behind, so the next open sees a clean log.
            os.ftruncate(self._fd, segment.size)
            raise
        segment.size += size
        segment.max_key = max_key
        with self._lock:
            self._refresh_stats()

    def _roll(self) -> None:
        """Close the active segment (synced) and start the next one."""
        assert self._fd is not None
        if self.fsync:
            os.fdatasync(self._fd)
            self.stats.fsyncs += 1
        os.close(self._fd)
        segment = self._new_segment(self._segments[-1].number + 1)
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND, 0o600)

    # -- trim / close ----------------------------------------------------------------------

    async def trim(self, through_key: int) -> int:
        """Delete every segment whose entries all have key <= `through_key` (their data is in
        the lake). Returns how many were deleted. Safe while appends run."""
        with self._lock:
            if self._state != "open":
                return 0
            removable = [s for s in self._segments[:-1] if s.max_key is None or s.max_key <= through_key]
            active = self._segments[-1]
            roll = (active.max_key is not None and active.max_key <= through_key
                    and not self._pending)
        if roll:
            # The writer thread is idle only between groups; take the lock around the swap.
            with self._lock:
                if not self._pending and active is self._segments[-1] and self._state == "open":
                    self._roll()
                    removable.append(active)
        for segment in removable:
            segment.path.unlink(missing_ok=True)
        if removable:
            with self._lock:
                self._segments = [s for s in self._segments if s not in removable]
                self._refresh_stats()
            self._sync_dir()
        return len(removable)

    async def close(self) -> None:
        """Finish pending appends and close. Idempotent."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        with self._lock:
            if self._state == "open":
                self._state = "closed"
            self._lock.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._state = "closed"


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(OSError(f"write-ahead log write failed: {error}"))
