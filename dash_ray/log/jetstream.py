"""The write-ahead log of one pipeline in a NATS JetStream stream: group commit into messages the
stream acknowledges, an owner epoch that fences a stale writer, recovery, and trim by purge.

A log is one subject, `dash.wal.<stream>.<name>`, in a stream with file storage and `replicas`
copies (3 in production: an acknowledged message is then stored on a quorum of servers). The
stream is the log's own, `DASH_WAL_<name>`, by default, or one shared by many logs (`stream=`):
a stream is a Raft group at R3, so thousands of pipelines are cheaper in a few shared streams,
while a stream of its own gives a pipeline its own leader, limits and placement. The subject
holds, in order:
- owner markers: one empty message per `open()`, headed `Dash-Owner`; its stream sequence is
  that owner's epoch;
- entry messages: groups of entries (format in `packing.py`), headed with their owner's
  `Dash-Epoch` and `Dash-Prev`, the sequence of the entry message before them.

Guarantees:
- `append` resolves once the stream acknowledged the message that ends its entry. Appends
  queued while a message waits for its acknowledgement share the next message (group commit),
  so concurrent appenders share round trips as the file log's share a sync.
- Fencing: each entry message expects the sequence of this owner's previous message (its
  marker, for the first) to be the last, and the stream stores it only if it still is. A newer
  owner's marker breaks that, so an older owner's next publish is refused and its log fails
  (its appends fail; later ones raise), with nothing stored. In a stream of its own the
  expectation is `Nats-Expected-Last-Sequence`, the stream's last: every server version checks
  it when the message is applied, in the order the stream's Raft group agreed. In a shared
  stream it is `Nats-Expected-Last-Subject-Sequence`, which a clustered NATS 2.9 checks only
  before proposing the message, against what it has applied: an older owner's message then
  passes beside a newer owner's marker in flight and lands after it (`test_jetstream_fence.py`).
  So `open()` refuses a shared stream with more than one replica on NATS before 2.10.
  One message is in flight at a time, so the expectation is always a sequence the stream
  really gave this owner: pipelined publishes would each expect a predicted sequence, and a
  clustered 2.9 server refuses a per-subject expectation of a message it has not applied yet.
- `open()` refuses (WalCorruptError) a subject from which an entry message went missing
  between others (`Dash-Prev` does not match).
- A refused publish, a lost connection or no acknowledgement within `ack_timeout` fails the
  log. A publish that timed out may still have been stored: a later `open()` returns it whole.
- `trim(k)` purges whole messages whose entries all have key <= k (never this owner's last
  message, whose sequence the next publish expects), after the appends queued before it,
  once it checked that the subject's last message is still this owner's.
Not guaranteed: the check and the purge are two requests, so a trim racing a takeover can still
purge entries whose data its owner had stored elsewhere (what a trim is for); losing the first
message that remains goes unnoticed by `open()` (it looks like a trim). A server that does not
sync each message to disk (JetStream's default) holds an acknowledged message in its page
cache until its next sync: R3 is what makes it survive the loss of a server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from dash_ray.errors import WalCorruptError
from dash_ray.log.base import Entry, LogStats
from dash_ray.log.futures import Waiter, settle_all
from dash_ray.log.packing import Message, Unpacker, pack, trimmable
from dash_ray.log.streams import WRONG_LAST_SEQUENCE, Names, ensure_stream, load_nats, messages, publish, purge

__all__ = ["JetStreamLog"]

log = logging.getLogger(__name__)

_PREV, _EPOCH, _OWNER = "Dash-Prev", "Dash-Epoch", "Dash-Owner"
_EXPECT_LAST_SUBJECT, _EXPECT_LAST_STREAM = "Nats-Expected-Last-Subject-Sequence", "Nats-Expected-Last-Sequence"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_HEADER_ROOM = 1024  # bytes of a message kept for its headers

_Append = tuple[int, bytes, asyncio.AbstractEventLoop, "asyncio.Future[None]"]


@dataclass
class _Stored:
    seq: int
    last_key: int
    open_end: bool  # its last entry goes on in the next message
    size: int


class JetStreamLog:
    """A pipeline's write-ahead log on a JetStream subject; one owner at a time (fenced)."""

    def __init__(self, name: str, *, servers: str | list[str] = "nats://127.0.0.1:4222", replicas: int = 1,
                 stream: str | None = None, ack_timeout: float = 10.0, request_timeout: float = 10.0) -> None:
        for what, value in (("log name", name), ("stream name", stream or name)):
            if not _NAME.match(value):
                raise ValueError(f"{what} {value!r}: use letters, digits, '_' and '-' only")
        self.name = name
        self.servers = servers
        self.replicas = replicas
        self.ack_timeout = ack_timeout
        self.request_timeout = request_timeout
        self._names = Names(name, stream)
        self.stream = self._names.stream
        # The fence's header: the stream's last sequence in a stream of its own (see the module).
        self._expect = _EXPECT_LAST_STREAM if stream is None else _EXPECT_LAST_SUBJECT
        self.stats = LogStats()
        self.epoch = 0
        self._state: Literal["new", "open", "closed", "failed"] = "new"
        self._failure: BaseException | None = None
        self._last_key = -1
        # Shared with callers' threads, under the lock:
        self._lock = threading.Lock()
        self._pending: list[_Append] = []
        self._trim_to: int | None = None
        self._trim_waiters: list[Waiter] = []
        # The log's own thread and event loop:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: concurrent.futures.Future[None] | None = None
        self._nc: Any = None
        self._js: Any = None
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stored: deque[_Stored] = deque()
        self._last_seq = 0  # this owner's last message on the subject (its marker at first)
        self._prev = 0  # the last entry message in the stream
        self._limit = 0
        self._closing = False

    @property
    def state(self) -> str:
        return self._state

    # -- open / recover (blocking, on the caller's thread; the work runs on the log's loop) ---

    def open(self) -> list[Entry]:
        """Take a new owner epoch (fencing any older owner), then recover every entry still in
        the stream, in order. Raises WalCorruptError when a message is missing between others
        (the epoch is taken; nothing else changes), OSError when NATS cannot be reached."""
        if self._state != "new" or self._thread is not None:
            raise RuntimeError(f"log is {self._state}")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"wal-js:{self.name}", daemon=True)
        self._thread.start()
        ready.wait()
        assert self._loop is not None
        try:
            return asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        except BaseException as exc:
            self._stop_thread()
            if isinstance(exc, Exception) and not isinstance(exc, (OSError, WalCorruptError)):
                raise OSError(f"write-ahead log {self.stream}: opening failed: {exc!r}") from exc
            raise

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _stop_thread(self) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop)
        self._thread.join()

    async def _open(self) -> list[Entry]:
        nats = load_nats()
        self._wake = asyncio.Event()
        try:
            self._nc = await nats.connect(
                self.servers, name=f"dash-wal:{self.name}", allow_reconnect=False,
                connect_timeout=self.request_timeout, error_cb=self._on_error,
                disconnected_cb=self._on_disconnect, closed_cb=self._on_disconnect)
        except Exception as exc:
            raise OSError(f"write-ahead log {self.stream}: cannot reach NATS at {self.servers}: {exc!r}") from exc
        self._js = self._nc.jetstream(timeout=self.request_timeout)
        self._limit = max(64, self._nc.max_payload - _HEADER_ROOM)
        await ensure_stream(self._js, self._names, replicas=self.replicas, server=self._nc.connected_server_version)
        # The marker lands wherever it lands; from then on no older owner's publish can follow.
        body = await publish(self._nc, self._names.subject, b"", headers={_OWNER: "1"}, timeout=self.request_timeout)
        if "error" in body:
            raise OSError(f"write-ahead log {self.stream}: taking ownership was refused: {body['error']}")
        self.epoch = self._last_seq = int(body["seq"])
        entries = await self._recover()
        with self._lock:
            self._state = "open"
        self._writer = asyncio.create_task(self._write())
        return entries

    async def _recover(self) -> list[Entry]:
        entries: list[Entry] = []
        unpacker = Unpacker(self.stream)
        async for msg in messages(self._js, self._names, before=self.epoch, timeout=self.request_timeout):
            seq, headers = msg.metadata.sequence.stream, msg.headers or {}
            if _OWNER in headers:
                continue  # an earlier owner's marker
            prev = int(headers.get(_PREV, -1))
            if (self._prev and prev != self._prev) or not 0 <= prev < seq:
                raise WalCorruptError(
                    f"write-ahead log {self.stream}: message {seq} follows message {prev}, but the message "
                    f"before it is {self._prev or 'none'}: messages are missing from the stream")
            self._prev = seq
            got = unpacker.read(msg.data, owner=headers.get(_EPOCH, ""), seq=seq)
            for entry in got:
                if entries and entry.key < entries[-1].key:
                    raise WalCorruptError(f"write-ahead log {self.stream}: key {entry.key} after "
                                          f"{entries[-1].key} at message {seq}")
                entries.append(entry)
            size = sum(len(e.data) for e in got)
            self._stored.append(_Stored(seq, unpacker.last_key, unpacker.open, size))
            self.stats.bytes += size
        unpacker.finish()
        self.stats.truncated_bytes += unpacker.dropped_bytes
        if entries:
            self._last_key = self.stats.last_key = entries[-1].key
        self.stats.segments = len(self._stored)
        return entries

    # -- the caller's event loop -------------------------------------------------------------

    def append(self, key: int, data: bytes) -> asyncio.Future[None]:
        """Queue an entry now (so appends keep call order); the future resolves once the stream
        acknowledged it and fails with OSError otherwise. Raises RuntimeError when the log is
        not open (not yet, closed, failed or fenced), ValueError when `key` is below the last."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "open":
                raise RuntimeError(f"log is {self._state}: {self._failure!r}" if self._failure
                                   else f"log is {self._state}")
            if key < self._last_key:
                raise ValueError(f"log keys must not decrease: {key} after {self._last_key}")
            self._last_key = key
            self._pending.append((key, bytes(data), loop, future))
            first = len(self._pending) == 1
        if first:
            self._kick()
        return future

    async def trim(self, through_key: int) -> None:
        """Purge messages whose entries all have key <= `through_key`, after the appends queued
        before this call; trims asked for while one waits merge (the highest key wins). Does
        nothing when the log is not open or fails first; raises OSError when the purge fails
        or a newer owner has taken the stream (the log has then failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "open":
                return
            self._trim_to = through_key if self._trim_to is None else max(self._trim_to, through_key)
            self._trim_waiters.append((loop, future))
        self._kick()
        await future

    async def close(self) -> None:
        """Publish what is queued and wait for its acknowledgement, then close the connection.
        Idempotent."""
        with self._lock:
            if self._state in ("new", "open"):
                self._state = "closed"
        if self._thread is not None and self._thread.is_alive() and self._loop is not None:
            if self._stopping is None:
                self._stopping = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            with contextlib.suppress(RuntimeError):
                await asyncio.wrap_future(self._stopping)
            await asyncio.to_thread(self._thread.join)
        self._state = "closed"

    def _kick(self) -> None:
        assert self._loop is not None and self._wake is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: the log is closed
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- the log's event loop ---------------------------------------------------------------

    async def _write(self) -> None:
        """Publish what is queued, one message at a time, then trim what was asked."""
        assert self._wake is not None
        while True:
            with self._lock:
                group, self._pending = self._pending, []
                trim_to, self._trim_to = self._trim_to, None
                waiters, self._trim_waiters = self._trim_waiters, []
                done = self._state != "open"
            if not group and trim_to is None:
                if done:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            trimming = False
            try:
                await self._publish(group)
                if trim_to is not None:
                    trimming = True
                    await self._trim(trim_to)
            except Exception as exc:  # noqa: BLE001 - reported to every waiter
                self._fail(exc, group, waiters if trimming else [], waiters if not trimming else [])
                return
            settle_all(waiters, None)

    async def _publish(self, group: list[_Append]) -> None:
        """Publish `group` in order; each message's appends are answered and removed from the
        front of `group` once it is acknowledged, so on an error `group` holds the rest."""
        for message in pack([(key, data) for key, data, _, _ in group], self._limit):
            headers = {_PREV: str(self._prev), _EPOCH: str(self.epoch), self._expect: str(self._last_seq)}
            body = await publish(self._nc, self._names.subject, message.payload, timeout=self.ack_timeout,
                                 headers=headers)
            if "error" in body:
                raise OSError(f"write-ahead log {self.stream}: message refused: {self._refusal(body['error'])}")
            self._acknowledged(int(body["seq"]), message)
            done = group[:message.ends]
            del group[:message.ends]
            if done:
                self.stats.appended += len(done)
                self.stats.last_key = done[-1][0]
                settle_all([(loop, future) for _, _, loop, future in done], None)

    def _acknowledged(self, seq: int, message: Message) -> None:
        self._last_seq = self._prev = seq
        self._stored.append(_Stored(seq, message.last_key, message.open_end, message.size))
        self.stats.fsyncs += 1
        self.stats.bytes += message.size
        self.stats.segments = len(self._stored)

    async def _trim(self, through_key: int) -> None:
        count = trimmable(self._stored, through_key)
        if not count:
            return
        upto = self._stored[count - 1].seq
        last = await self._js.get_last_msg(self.stream, self._names.subject)
        newest = last.seq if _OWNER in (last.headers or {}) else int((last.headers or {}).get(_EPOCH, 0))
        if newest != self.epoch:
            raise OSError(f"write-ahead log {self.stream}: owner epoch {self.epoch} was superseded by epoch "
                          f"{newest} (a newer owner opened the log); not trimming")
        # Never this owner's last message: its sequence is what the next publish expects.
        below = min(upto + 1, self._last_seq)
        purged = await purge(self._nc, self._names, {"filter": self._names.subject, "seq": below},
                             timeout=self.request_timeout)
        count -= below <= upto  # the last message stays, with what it holds
        for _ in range(count):
            self.stats.bytes -= self._stored.popleft().size
        self.stats.trimmed += purged
        self.stats.segments = len(self._stored)

    def _fail(self, error: BaseException, group: list[_Append], trims: list[Waiter], passed: list[Waiter]) -> None:
        """Fail the log: the appends not yet acknowledged and a trim that failed get `error`;
        trims that never ran return as if the log had not been open."""
        log.error("write-ahead log %s failed: %s", self.stream, error)
        with self._lock:
            self._failure = error
            if self._state == "open":
                self._state = "failed"
            group += self._pending
            later = passed + self._trim_waiters
            self._pending, self._trim_waiters, self._trim_to = [], [], None
        settle_all([(loop, future) for _, _, loop, future in group], error)
        settle_all(trims, error)
        settle_all(later, None)

    async def _on_disconnect(self) -> None:
        if not self._closing and self._writer is not None and not self._writer.done():
            log.warning("write-ahead log %s: lost its connection to NATS", self.stream)
            self._kick_failure(ConnectionError(f"write-ahead log {self.stream}: lost its connection to NATS"))

    def _kick_failure(self, error: BaseException) -> None:
        """A lost connection fails the log even when nothing is being published."""
        with self._lock:
            if self._failure is not None or self._state != "open":
                return
        self._fail(error, [], [], [])

    def _refusal(self, error: dict[str, Any]) -> str:
        if error.get("err_code") == WRONG_LAST_SEQUENCE:  # another owner's message came after ours
            return f"owner epoch {self.epoch} was superseded (a newer owner opened the log): {error.get('description')}"
        return str(error)

    async def _on_error(self, error: Exception) -> None:
        log.warning("write-ahead log %s: NATS reports %r", self.stream, error)

    async def _shutdown(self) -> None:
        assert self._wake is not None
        self._wake.set()
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)  # publishes what is queued
        await self._disconnect()

    async def _disconnect(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)
