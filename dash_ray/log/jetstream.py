"""The write-ahead log of one pipeline in a NATS JetStream stream: pipelined publishes acknowledged
by the stream, an owner epoch that fences a stale writer, recovery, and trim by purge.

One stream per pipeline, `DASH_WAL_<name>`, file storage, `replicas` copies (3 in production:
an acknowledged publish is then on a quorum's disks). Its subjects, under `dash.wal.<name>`:
- `.owner`: one empty message per `open()`. Its stream sequence is the owner's epoch.
- `.entry.<epoch>`: the entries that owner appended, in call order. An entry larger than the
  connection's largest message is split into chunks (`Dash-More` on all but the last).
A stream per pipeline, not a subject per pipeline in one shared stream, because the fencing
below needs the stream's last sequence to be this pipeline's alone (pipelined publishes predict
their own sequence numbers), and because then a pipeline's limits, placement and deletion are
its own. The cost is one stream (one Raft group at R3) per pipeline.

Guarantees:
- `append` resolves once the stream acknowledged every message of the entry (stored on a
  quorum); publishes are pipelined, so concurrent appends share round trips rather than wait
  for each other, and one connection keeps their order.
- Fencing: every entry message carries `Nats-Expected-Last-Sequence` and
  `Nats-Expected-Last-Subject-Sequence`, both the sequence its predecessor from this owner got.
  The server stores a message only when the stream and the owner's own subject both end with
  that predecessor, so once a newer owner's `.owner` message is in the stream nothing of an
  older owner can follow it: the first stale publish is refused and every later one too. A
  refused publish fails the log (its appends fail; later appends raise), as a failed write does.
- Each message also carries `Dash-Prev`, the sequence of the entry message before it, so
  `open()` refuses (WalCorruptError) a stream from which an entry went missing between others.
- A failed publish, a lost connection or an acknowledgement later than `ack_timeout` fails
  the log. A timed-out publish may still have been stored; `open()` then returns it (whole,
  in order), never a part of an entry and never anything after a refused one.
- `trim(k)` purges whole entries with key <= k once the appends queued before it are
  acknowledged, after checking that this owner's epoch is still the newest.
Not guaranteed: the check and the purge are two requests, so a trim racing a takeover can
still purge entries whose data its owner had stored elsewhere (what a trim is for); the first
entry that remains can be lost without `open()` noticing (it looks like a trim).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dash_ray.errors import WalCorruptError
from dash_ray.log.base import Entry, LogStats
from dash_ray.log.futures import Waiter, failure, settle_all

__all__ = ["JetStreamLog", "stream_name"]

log = logging.getLogger(__name__)

_KEY, _PREV, _MORE = "Dash-Key", "Dash-Prev", "Dash-More"
_EXPECT_LAST, _EXPECT_SUBJECT = "Nats-Expected-Last-Sequence", "Nats-Expected-Last-Subject-Sequence"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_HEADER_ROOM = 1024  # bytes kept free for headers in each message


def stream_name(name: str) -> str:
    return f"DASH_WAL_{name}"


def _nats() -> Any:
    try:
        import nats
    except ImportError as exc:  # pragma: no cover - the cluster extra is installed in tests
        raise ImportError("the JetStream write-ahead log needs nats-py: pip install 'dash-ray[cluster]'") from exc
    return nats


@dataclass
class _Append:
    key: int
    data: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass
class _Flight:
    append: _Append
    unacked: int  # messages of the entry not yet acknowledged
    deadline: float


@dataclass
class _Stored:
    last_seq: int  # stream sequence of the entry's last message
    key: int
    size: int


class JetStreamLog:
    """A pipeline's write-ahead log in its own JetStream stream; one owner at a time (fenced)."""

    def __init__(self, name: str, *, servers: str | list[str] = "nats://127.0.0.1:4222", replicas: int = 1,
                 ack_timeout: float = 10.0, request_timeout: float = 10.0, max_in_flight: int = 4096) -> None:
        if not _NAME.match(name):
            raise ValueError(f"log name {name!r}: use letters, digits, '_' and '-' only")
        self.name = name
        self.servers = servers
        self.replicas = replicas
        self.ack_timeout = ack_timeout
        self.request_timeout = request_timeout
        self.max_in_flight = max_in_flight
        self.stream = stream_name(name)
        self.stats = LogStats()
        self.epoch = 0
        self._base = f"dash.wal.{name}"
        self._state: Literal["new", "open", "closed", "failed"] = "new"
        self._failure: BaseException | None = None
        self._last_key = -1
        # Shared with callers' threads, under the lock:
        self._lock = threading.Lock()
        self._pending: list[_Append] = []
        self._queued = 0  # appends ever queued; a trim waits for as many to be acknowledged
        # The log's own event loop's alone:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: concurrent.futures.Future[None] | None = None
        self._nc: Any = None
        self._js: Any = None
        self._wake: asyncio.Event | None = None
        self._advanced: asyncio.Event | None = None  # set when acknowledgements or a failure came
        self._done: list[Waiter] = []  # acknowledged appends, answered once the acks in hand are read
        self._trim_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._flights: deque[_Flight] = deque()
        self._by_seq: dict[int, _Flight] = {}
        self._stored: deque[_Stored] = deque()
        self._acked = 0  # leading appends acknowledged
        self._last_seq = 0  # the stream's last sequence, as this owner predicts it
        self._subject_last = 0  # last sequence on this owner's entry subject (0: none yet)
        self._prev = 0  # sequence of the last entry message in the stream
        self._chunk = 0
        self._inbox = ""
        self._closing = False

    @property
    def state(self) -> str:
        return self._state

    # -- open / recover (blocking, on the caller's thread; the work runs on the log's loop) ---

    def open(self) -> list[Entry]:
        """Take a new owner epoch (fencing any older owner), then recover every entry still in
        the stream, in order. Raises WalCorruptError when entries are missing between others
        (the epoch is taken; nothing else changes), OSError when NATS cannot be reached."""
        if self._state != "new" or self._thread is not None:
            raise RuntimeError(f"log is {self._state}")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"wal-js:{self.name}", daemon=True)
        self._thread.start()
        ready.wait()
        assert self._loop is not None
        try:
            entries = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        except BaseException:
            self._stop_thread()
            raise
        return entries

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _stop_thread(self) -> None:
        assert self._loop is not None and self._thread is not None

        async def stop() -> None:
            self._closing = True
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()
            for task in self._tasks:
                task.cancel()
            asyncio.get_running_loop().stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join()

    async def _open(self) -> list[Entry]:
        nats = _nats()
        self._wake, self._advanced, self._trim_lock = asyncio.Event(), asyncio.Event(), asyncio.Lock()
        try:
            self._nc = await nats.connect(
                self.servers, name=f"dash-wal:{self.name}", allow_reconnect=False,
                connect_timeout=self.request_timeout, error_cb=self._on_error,
                disconnected_cb=self._on_disconnect, closed_cb=self._on_disconnect)
        except Exception as exc:
            raise OSError(f"write-ahead log {self.stream}: cannot reach NATS at {self.servers}: {exc!r}") from exc
        self._js = self._nc.jetstream(timeout=self.request_timeout)
        self._chunk = max(1, self._nc.max_payload - _HEADER_ROOM)
        await self._ensure_stream()
        # The marker lands wherever it lands; from then on no older owner's publish can follow.
        self.epoch = self._last_seq = await self._publish_marker()
        entries = await self._recover()
        self._inbox = self._nc.new_inbox()
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        with self._lock:
            self._state = "open"
        self._tasks = [asyncio.create_task(self._publisher()), asyncio.create_task(self._watch())]
        return entries

    async def _ensure_stream(self) -> None:
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError, NotFoundError

        try:
            await self._js.stream_info(self.stream)
            return
        except NotFoundError:
            pass
        config = StreamConfig(name=self.stream, subjects=[f"{self._base}.>"], storage=StorageType.FILE,
                              num_replicas=self.replicas, retention=RetentionPolicy.LIMITS,
                              discard=DiscardPolicy.OLD, allow_direct=True)
        try:
            await self._js.add_stream(config)
        except BadRequestError:  # another owner created it first (same config, or it says why)
            await self._js.stream_info(self.stream)

    async def _publish_marker(self) -> int:
        reply = await self._nc.request(f"{self._base}.owner", b"", timeout=self.request_timeout)
        body = _ack_body(reply)
        if "error" in body or not body.get("seq"):
            raise OSError(f"write-ahead log {self.stream}: taking ownership was refused: {body}")
        return int(body["seq"])

    async def _recover(self) -> list[Entry]:
        from nats.js.api import DeliverPolicy

        subject = f"{self._base}.entry.>"
        info = await self._js.stream_info(self.stream, subjects_filter=subject)
        if not sum((info.state.subjects or {}).values()):
            return []
        entries: list[Entry] = []
        parts: list[bytes] = []
        part_subject = ""
        sub = await self._js.subscribe(subject, stream=self.stream, ordered_consumer=True,
                                       deliver_policy=DeliverPolicy.ALL)
        try:
            while True:
                msg = await sub.next_msg(timeout=self.request_timeout)
                meta = msg.metadata
                seq, headers = meta.sequence.stream, msg.headers or {}
                key, prev = int(headers[_KEY]), int(headers[_PREV])
                if (self._prev and prev != self._prev) or prev >= seq:
                    raise WalCorruptError(
                        f"write-ahead log {self.stream}: message {seq} follows message {prev}, but the "
                        f"message before it is {self._prev or 'none'}: entries are missing from the stream")
                if parts and msg.subject != part_subject:
                    self.stats.truncated_bytes += sum(map(len, parts))  # never acknowledged
                    parts = []
                parts.append(msg.data)
                part_subject = msg.subject
                self._prev = seq
                if _MORE not in headers:
                    if entries and key < entries[-1].key:
                        raise WalCorruptError(f"write-ahead log {self.stream}: key {key} after "
                                              f"{entries[-1].key} at message {seq}")
                    entries.append(Entry(key, b"".join(parts)))
                    self._stored.append(_Stored(seq, key, len(entries[-1].data)))
                    self.stats.bytes += len(entries[-1].data)
                    parts = []
                if meta.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self.stats.truncated_bytes += sum(map(len, parts))  # a torn last entry: never acknowledged
        if entries:
            self._last_key = entries[-1].key
            self.stats.last_key = self._last_key
        self._refresh_stats()
        return entries

    def _refresh_stats(self) -> None:
        self.stats.segments = len(self._stored)

    # -- the caller's event loop -------------------------------------------------------------

    def append(self, key: int, data: bytes) -> asyncio.Future[None]:
        """Queue an entry now (so appends keep call order); the future resolves once the stream
        acknowledged it and fails with OSError otherwise. Raises RuntimeError when the log is
        not open (not yet, closed, failed or fenced), ValueError when `key` is below the last."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "open":
                raise RuntimeError(f"log is {self._state}: {self._failure!r}" if self._failure else f"log is {self._state}")
            if key < self._last_key:
                raise ValueError(f"log keys must not decrease: {key} after {self._last_key}")
            self._last_key = key
            self._pending.append(_Append(key, bytes(data), loop, future))
            self._queued += 1
            first = len(self._pending) == 1
        if first:
            assert self._loop is not None and self._wake is not None
            self._loop.call_soon_threadsafe(self._wake.set)
        return future

    async def trim(self, through_key: int) -> None:
        """Purge entries with key <= `through_key` once the appends queued before this call are
        acknowledged. Does nothing when the log is not open or fails first; raises OSError when
        the purge fails or a newer owner has taken the stream (the log has then failed)."""
        with self._lock:
            if self._state != "open":
                return
            ticket = self._queued
        assert self._loop is not None
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._trim(through_key, ticket), self._loop))

    async def close(self) -> None:
        """Publish what is queued, wait for its acknowledgements (at most `ack_timeout`), then
        close the connection. Idempotent."""
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

    # -- the log's event loop ---------------------------------------------------------------

    async def _publisher(self) -> None:
        """Publish queued appends in call order, without waiting for acknowledgements."""
        assert self._wake is not None
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                done = self._state != "open"
            if not batch:
                if done:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            for i, append in enumerate(batch):
                if self._failure is not None:
                    settle_all([(a.loop, a.future) for a in batch[i:]], self._failure)
                    break
                if len(self._by_seq) >= self.max_in_flight:
                    await self._until(lambda: len(self._by_seq) < self.max_in_flight)
                    if self._failure is not None:
                        settle_all([(a.loop, a.future) for a in batch[i:]], self._failure)
                        break
                try:
                    await self._publish(append)
                except Exception as exc:  # noqa: BLE001 - fails the log, reported to every waiter
                    self._fail(exc)

    async def _publish(self, append: _Append) -> None:
        data = append.data
        chunks = [data[i:i + self._chunk] for i in range(0, len(data), self._chunk)] or [b""]
        flight = _Flight(append, len(chunks), time.monotonic() + self.ack_timeout)
        self._flights.append(flight)
        subject = f"{self._base}.entry.{self.epoch}"
        for i, chunk in enumerate(chunks):
            seq = self._last_seq + 1
            headers = {_KEY: str(append.key), _PREV: str(self._prev),
                       _EXPECT_LAST: str(self._last_seq), _EXPECT_SUBJECT: str(self._subject_last)}
            if i < len(chunks) - 1:
                headers[_MORE] = "1"
            self._by_seq[seq] = flight
            self._last_seq = self._subject_last = self._prev = seq
            await self._nc.publish(subject, chunk, reply=f"{self._inbox}.{seq}", headers=headers)
        self._stored.append(_Stored(self._last_seq, append.key, len(data)))
        self.stats.bytes += len(data)

    async def _on_ack(self, msg: Any) -> None:
        seq = int(msg.subject.rsplit(".", 1)[1])
        flight = self._by_seq.pop(seq, None)
        if flight is None:
            return  # the log failed meanwhile
        body = _ack_body(msg)
        if "error" in body or body.get("seq") != seq:
            self._fail(OSError(f"write-ahead log {self.stream}: message {seq} refused: {_refusal(body, self.epoch)}"))
            return
        self.stats.fsyncs += 1
        flight.unacked -= 1
        while self._flights and self._flights[0].unacked == 0:
            append = self._flights.popleft().append
            if not self._done:  # answered together once the acks already received are read
                asyncio.get_running_loop().call_soon(self._answer)
            self._done.append((append.loop, append.future))
            self._acked += 1
            self.stats.appended += 1
            self.stats.last_key = append.key

    def _answer(self) -> None:
        done, self._done = self._done, []
        self._refresh_stats()
        settle_all(done, None)
        assert self._advanced is not None
        self._advanced.set()

    async def _until(self, done: Callable[[], bool]) -> None:
        """Wait until `done()` or the log failed."""
        assert self._advanced is not None
        while not done() and self._failure is None:
            self._advanced.clear()
            await self._advanced.wait()

    async def _watch(self) -> None:
        """Fail the log when the oldest publish waits longer than `ack_timeout` for its ack."""
        while self._failure is None:
            await asyncio.sleep(self.ack_timeout / 4)
            if self._flights and self._flights[0].deadline < time.monotonic():
                self._fail(TimeoutError(f"write-ahead log {self.stream}: no acknowledgement within "
                                        f"{self.ack_timeout} s"))

    async def _on_disconnect(self) -> None:
        if not self._closing:
            self._fail(ConnectionError(f"write-ahead log {self.stream}: lost its connection to NATS"))

    async def _on_error(self, error: Exception) -> None:
        log.warning("write-ahead log %s: NATS reports %r", self.stream, error)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._failure is not None:
                return
            self._failure = error
            if self._state == "open":
                self._state = "failed"
            pending, self._pending = self._pending, []
        log.error("write-ahead log %s failed: %s", self.stream, error)
        waiters = [(f.append.loop, f.append.future) for f in self._flights]
        waiters += [(a.loop, a.future) for a in pending]
        self._flights.clear()
        self._by_seq.clear()
        settle_all(waiters, error)
        assert self._advanced is not None
        self._advanced.set()

    async def _trim(self, through_key: int, ticket: int) -> None:
        assert self._trim_lock is not None
        await self._until(lambda: self._acked >= ticket)
        async with self._trim_lock:
            if self._failure is not None:
                return
            upto = 0
            while self._stored and self._stored[0].key <= through_key:
                gone = self._stored.popleft()
                upto = gone.last_seq
                self.stats.bytes -= gone.size
            if not upto:
                return
            try:
                newest = (await self._js.get_last_msg(self.stream, f"{self._base}.owner")).seq
                if newest != self.epoch:
                    raise OSError(f"write-ahead log {self.stream}: owner epoch {self.epoch} was superseded "
                                  f"by epoch {newest}; not trimming")
                purged = await self._purge({"filter": f"{self._base}.entry.>", "seq": upto + 1})
                await self._purge({"filter": f"{self._base}.owner", "keep": 1})
            except Exception as exc:
                self._fail(exc)
                raise failure(exc) from exc
            self.stats.trimmed += purged
            self._refresh_stats()

    async def _purge(self, request: dict[str, Any]) -> int:
        reply = await self._nc.request(f"$JS.API.STREAM.PURGE.{self.stream}", json.dumps(request).encode(),
                                       timeout=self.request_timeout)
        body = json.loads(reply.data)
        if not body.get("success"):
            raise OSError(f"write-ahead log {self.stream}: purge {request} refused: {body.get('error')}")
        return int(body.get("purged", 0))

    async def _shutdown(self) -> None:
        assert self._wake is not None
        self._wake.set()
        if self._tasks:
            await asyncio.gather(self._tasks[0], return_exceptions=True)  # publishes what is queued
        await self._until(lambda: not self._flights and not self._done)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self._nc.close()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)


def _ack_body(msg: Any) -> dict[str, Any]:
    """The stream's answer to a publish; a status-only reply (503: no stream listens) is an error."""
    try:
        body = json.loads(msg.data) if msg.data else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        status = (msg.headers or {}).get("Status", "no reply")
        return {"error": {"description": f"status {status}: no stream took the message"}}
    return body


def _refusal(body: dict[str, Any], epoch: int) -> str:
    error = body.get("error") or {}
    if error.get("err_code") == 10071:  # wrong last sequence: another owner wrote after us
        return f"owner epoch {epoch} was superseded (a newer owner opened the log): {error.get('description')}"
    return str(error or body)
