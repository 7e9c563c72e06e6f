"""The write-ahead log of one pipeline in a local folder: append with group commit, recover, trim.

The folder holds segment files `<n>.wal` (format and recovery in `segments.py`). One writer
thread owns them: it alone writes, syncs, rolls and deletes segments, so a trim can never
close or remove a file that a write is about to use.

Guarantees:
- `append(...)` resolves only after the entry is written and `fdatasync`'d; entries appended
  while a sync is running share the next one (group commit), so concurrent appenders pay for
  one sync between them. The event loop never blocks on the disk: the writer thread does it.
- Entries are made durable, and recovered by `open()`, in append order.
- A crash can leave a torn frame at the end of the last segment; `open()` cuts it off (those
  bytes were never acknowledged). A bad frame with a valid one after it, or anything bad in an
  earlier segment, is `WalCorruptError`: recovery refuses rather than drop acknowledged data.
- A failed write or sync truncates the segment back to its last synced frame, fails every
  append not yet durable, and fails the log (later appends raise). When a group spans a roll,
  the part synced before the roll is durable and its appends succeed.
- `trim(k)` is done by the writer between groups; it deletes whole segments whose entries all
  have key <= k (rolling the active one first when all of its entries do) and never one that
  holds a key > k.
- New folders, new segment files and trim's deletions are fsync'd into their directory.
- Fencing: `open()` raises the owner epoch kept in the folder's `OWNER` file (openers take
  turns by an flock on the folder), then takes the writer lock (an flock on `OWNER`) and
  recovers while it holds it. The writer takes that lock around each group and trim and
  checks the epoch first. So once a newer owner opened the folder, an older instance's next
  write or trim fails the log (as a failed write does) with nothing written, and a busy older
  writer cannot keep the newer owner waiting beyond the group it is writing. The lock costs a
  few system calls per group, next to the sync.
Not guaranteed: anything on a disk that lies about fsync; telling a damaged last frame from a
torn write (both are cut, as nothing valid follows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from dash_ray.log.base import Entry, LogStats
from dash_ray.log.segments import Recovery, Segment, encode, make_dirs, recover, segment_path, sync_dir

__all__ = ["WriteAheadLog"]

log = logging.getLogger(__name__)

OWNER = "OWNER"  # the owner epoch: 8 bytes, little-endian

_Append = tuple[int, bytes, asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class WriteAheadLog:
    """Append-only, group-committed log in one directory (its `*.wal` files are this log's)."""

    def __init__(self, directory: str | Path, *, segment_bytes: int = 64 * 2**20, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.stats = LogStats()
        self.epoch = 0
        self._state: Literal["new", "open", "closed", "failed"] = "new"
        self._failure: BaseException | None = None
        self._last_key = -1
        # Shared with the writer thread, under the lock:
        self._lock = threading.Condition()
        self._pending: list[_Append] = []
        self._trim_to: int | None = None
        self._trim_waiters: list[_Waiter] = []
        # The writer thread's alone once the log is open:
        self._segments: list[Segment] = []
        self._fd: int | None = None
        self._owner_fd: int | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> str:
        return self._state

    # -- open / recover --------------------------------------------------------------------

    def open(self) -> list[Entry]:
        """Take a new owner epoch, then recover: every entry still in the log, in order. Cuts a
        torn tail; raises WalCorruptError for damage elsewhere (leaving the files as they were,
        the epoch taken). Then the log accepts appends. Blocking I/O: call it in a thread.
        Creates the folder if needed."""
        if self._state != "new":
            raise RuntimeError(f"log is {self._state}")
        make_dirs(self.directory, sync=self.fsync)
        recovery = self._take_ownership()
        assert self._owner_fd is not None
        try:
            self._segments = recovery.segments
            self.stats.truncated_bytes += recovery.truncated_bytes
            if recovery.entries:
                self._last_key = recovery.entries[-1].key
            if not self._segments:
                self._new_segment(1)
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except BaseException:
            os.close(self._owner_fd)
            self._owner_fd = None
            raise
        self._state = "open"
        self.stats.last_key = max(self._last_key, 0)
        self._refresh_stats()
        fcntl.flock(self._owner_fd, fcntl.LOCK_UN)
        self._thread = threading.Thread(target=self._writer, name=f"wal:{self.directory.name}", daemon=True)
        self._thread.start()
        return recovery.entries

    def _take_ownership(self) -> Recovery:
        """Raise the epoch (an older writer fails from its next group on), wait out the group
        it may be writing, and recover. Leaves the writer lock held; `open` releases it."""
        owner = self.directory / OWNER
        created = not owner.exists()
        turn = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        self._owner_fd = os.open(owner, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)  # one opener at a time; writers never take this one
            self.epoch = _read_epoch(self._owner_fd) + 1
            os.pwrite(self._owner_fd, self.epoch.to_bytes(8, "little"), 0)
            if self.fsync:
                os.fsync(self._owner_fd)
                if created:
                    sync_dir(self.directory)
            fcntl.flock(self._owner_fd, fcntl.LOCK_EX)
            return recover(self.directory)
        except BaseException:
            os.close(self._owner_fd)  # drops its lock too
            self._owner_fd = None
            raise
        finally:
            os.close(turn)

    def _new_segment(self, number: int) -> Segment:
        segment = Segment(number, segment_path(self.directory, number))
        fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        if self.fsync:
            sync_dir(self.directory)
        self._segments.append(segment)
        return segment

    def _refresh_stats(self) -> None:
        self.stats.segments = len(self._segments)
        self.stats.bytes = sum(s.size for s in self._segments)

    # -- the event loop's side -------------------------------------------------------------

    def append(self, key: int, data: bytes) -> asyncio.Future[None]:
        """Queue an entry now (so appends keep call order) and return a future that resolves
        once it is durable, or fails with OSError. Raises RuntimeError when the log is not
        open (not yet, closed, or failed) and ValueError when `key` is below the last key."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "open":
                raise RuntimeError(f"log is {self._state}: {self._failure!r}" if self._failure
                                   else f"log is {self._state}")
            if key < self._last_key:
                raise ValueError(f"log keys must not decrease: {key} after {self._last_key}")
            self._last_key = key
            self._pending.append((key, data, loop, future))
            self._lock.notify()
        return future

    async def trim(self, through_key: int) -> None:
        """Ask the writer to delete every segment whose entries all have key <= `through_key`
        (their data is stored elsewhere) and wait until it has. Trims asked for while one is
        waiting merge (the highest key wins). Safe while appends run; never blocks the loop.
        Does nothing when the log is not open, or fails before it gets to the trim; raises
        OSError when the trim's own I/O fails (the log has then failed too)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "open":
                return
            self._trim_to = through_key if self._trim_to is None else max(self._trim_to, through_key)
            self._trim_waiters.append((loop, future))
            self._lock.notify()
        await future

    async def close(self) -> None:
        """Finish the pending appends and trims, then close. Idempotent."""
        with self._lock:
            if self._state in ("new", "open"):
                self._state = "closed"
            self._lock.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._state = "closed"

    # -- the writer thread -----------------------------------------------------------------

    def _writer(self) -> None:
        try:
            while self._serve_once():
                pass
        finally:
            for fd in (self._fd, self._owner_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._owner_fd = None

    def _serve_once(self) -> bool:
        """Write what is pending, then trim what was asked; False once the log is done."""
        with self._lock:
            while not self._pending and self._trim_to is None and self._state == "open":
                self._lock.wait()
            group, self._pending = self._pending, []
            trim_to, self._trim_to = self._trim_to, None
            waiters, self._trim_waiters = self._trim_waiters, []
            if not group and trim_to is None:
                return False  # closed, and nothing left to do
        trimming = not group  # the owner check fails whichever comes first
        try:
            with self._owned():
                self._write_group(group)
                if trim_to is not None:
                    trimming = True
                    self._trim(trim_to)
        except BaseException as exc:  # reported to every waiter
            log.exception("write-ahead log %s: %s failed", self.directory, "trim" if trimming else "write")
            with self._lock:
                self._failure = exc
                self._state = "failed"
                group += self._pending
                later = self._trim_waiters
                self._pending, self._trim_waiters, self._trim_to = [], [], None
            _settle_all([(loop, future) for _, _, loop, future in group], exc)
            _settle_all(waiters, exc if trimming else None)
            _settle_all(later, None)
            return False
        _settle_all(waiters, None)
        return True

    @contextlib.contextmanager
    def _owned(self) -> Iterator[None]:
        """Hold the owner lock, and go on only while this instance's epoch is the newest."""
        assert self._owner_fd is not None
        fcntl.flock(self._owner_fd, fcntl.LOCK_EX)
        try:
            newest = _read_epoch(self._owner_fd)
            if newest != self.epoch:
                raise OSError(f"write-ahead log {self.directory}: owner epoch {self.epoch} was superseded by "
                              f"epoch {newest} (a newer owner opened the log); nothing written")
            yield
        finally:
            fcntl.flock(self._owner_fd, fcntl.LOCK_UN)

    def _write_group(self, group: list[_Append]) -> None:
        """Write `group` in order, one synced run per segment. Each run's appends are resolved
        and removed from the front of `group` once durable, so on an error `group` holds
        exactly the appends that are not."""
        while group:
            segment = self._segments[-1]
            chunks: list[bytes] = []
            size = 0
            for key, data, _, _ in group:
                frame = encode(key, data)
                if segment.size + size + len(frame) > self.segment_bytes and segment.size + size > 0:
                    break
                chunks.append(frame)
                size += len(frame)
            if not chunks:
                self._roll()  # the active segment is full
                continue
            count = len(chunks)
            self._write(segment, b"".join(chunks), max_key=group[count - 1][0])
            done = group[:count]
            del group[:count]
            self.stats.appended += count
            self.stats.last_key = done[-1][0]
            _settle_all([(loop, future) for _, _, loop, future in done], None)

    def _write(self, segment: Segment, data: bytes, *, max_key: int) -> None:
        assert self._fd is not None
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fdatasync(self._fd)
                self.stats.fsyncs += 1
        except BaseException:
            # Leave only synced frames behind, so the next open sees none of this run.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, segment.size)
                if self.fsync:
                    os.fdatasync(self._fd)
            raise
        segment.size += len(data)
        segment.max_key = max_key
        self._refresh_stats()

    def _roll(self) -> None:
        """Start the next segment. The active one needs no sync: every run in it had one."""
        segment = self._new_segment(self._segments[-1].number + 1)
        fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND, 0o600)
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    def _trim(self, through_key: int) -> None:
        active = self._segments[-1]
        if active.max_key is not None and active.max_key <= through_key:
            self._roll()
        doomed = [s for s in self._segments[:-1] if s.max_key is None or s.max_key <= through_key]
        if not doomed:
            return
        for segment in doomed:  # oldest first: a crash part-way leaves a suffix of the log
            segment.path.unlink(missing_ok=True)
        self._segments = [s for s in self._segments if s not in doomed]
        self.stats.trimmed += len(doomed)
        self._refresh_stats()
        if self.fsync:
            sync_dir(self.directory)


def _read_epoch(fd: int) -> int:
    return int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little")


def _settle_all(waiters: list[_Waiter], error: BaseException | None) -> None:
    for loop, future in waiters:
        try:
            loop.call_soon_threadsafe(_settle, future, error)
        except RuntimeError:
            pass  # the loop is gone; nobody waits any more


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        failure = OSError(f"write-ahead log failed: {error!r}")
        failure.__cause__ = error
        future.set_exception(failure)
