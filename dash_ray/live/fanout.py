"""Fan-out of one pipeline's live records to the WebSocket clients of one web replica, in
plain Python (the route in `serve_app/live.py` only wires sockets to it).

One `Topic` per pipeline with watchers holds one long poll on the pipeline's feed, however
many clients watch, and encodes each message once for all of them. Each client (`Watcher`)
has its own cursor and a bounded queue (`max_messages`, `max_bytes`):
- a client that asks to resume (`after=<seq>`) first catches up on its own: from the feed's
  ring, or from the silver store for what has left the ring, then joins the live tail;
- a client too slow for the live tail is not dropped and does not hold anyone up: when its
  queue overflows the queue is emptied and it catches up again from its cursor, at its own
  pace, then rejoins. No record is skipped or sent twice: every message carries the seq
  range it covers and a client is sent only what lies past its cursor;
- a `gap` message is sent only for records asked for that no longer exist (retention).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from dash_ray.errors import NotFoundError
from dash_ray.live.feed import LiveRead

__all__ = ["FeedSource", "Message", "StoredRead", "Topic", "Watcher"]

log = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class StoredRead:
    """Records after a seq from the silver store, in seq order; `last_seq` is where the
    reader now is, `first_seq` the first seq the store still holds (retention)."""

    records: list[dict[str, Any]]
    last_seq: int
    first_seq: int


class FeedSource(Protocol):
    """Where a topic reads: the pipeline's feed (`read`, `after=None` for its position) and
    its silver store (`stored`). Both may raise; NotFoundError means the pipeline is gone."""

    async def read(self, after: int | None, *, wait_s: float, limit: int) -> LiveRead: ...

    async def stored(self, after: int, *, limit: int) -> StoredRead: ...


@dataclass(frozen=True)
class Message:
    first_seq: int
    last_seq: int
    records: list[dict[str, Any]]
    text: str

    @classmethod
    def of(cls, first_seq: int, last_seq: int, records: list[dict[str, Any]]) -> Message:
        body = orjson.dumps({"seq": last_seq, "records": records}).decode()
        return cls(first_seq, last_seq, records, body)

    def after(self, cursor: int) -> Message | None:
        """This message as a client at `cursor` should get it (None: it has it all)."""
        if self.last_seq <= cursor:
            return None
        if self.first_seq > cursor:
            return self
        return Message.of(cursor + 1, self.last_seq, [r for r in self.records if r["seq"] > cursor])


@dataclass(eq=False, slots=True)
class Watcher:
    """One client: its cursor, whether it follows the live tail, and its bounded queue. Kept
    small (slots, a plain list, a future only while waiting): a replica holds thousands."""

    topic: Topic
    send: Send
    cursor: int
    live: bool = False
    queue: list[Message] = field(default_factory=list)
    queued_bytes: int = 0
    closed: bool = False
    close_code: int | None = None
    overflows: int = 0
    _waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def offer(self, message: Message) -> None:
        if not self.live or self.closed:
            return
        if len(self.queue) >= self.topic.max_messages or self.queued_bytes + len(message.text) > self.topic.max_bytes:
            # Too slow for the live tail: catch up from the cursor instead (nothing is lost).
            self.queue.clear()
            self.queued_bytes = 0
            self.live = False
            self.overflows += 1
        else:
            self.queue.append(message)
            self.queued_bytes += len(message.text)
        self.wake()

    def close(self, code: int | None = None) -> None:
        self.closed = True
        if code is not None:
            self.close_code = code
        self.wake()

    async def run(self) -> None:
        """Deliver to the client until it or the topic closes."""
        while not self.closed:
            if not self.live:
                await self._catch_up()
                continue
            if not self.queue:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            message = self.queue.pop(0)
            self.queued_bytes -= len(message.text)
            await self._deliver(message)

    async def _deliver(self, message: Message) -> None:
        shown = message.after(self.cursor)
        if shown is not None:
            await self.send(shown.text)
            self.cursor = shown.last_seq

    async def _catch_up(self) -> None:
        topic = self.topic
        while not self.closed:
            read = await topic.source.read(self.cursor, wait_s=0.0, limit=topic.batch)
            if read.behind:
                stored = await topic.source.stored(self.cursor, limit=topic.batch)
                if self.cursor + 1 < stored.first_seq:
                    await self.send(orjson.dumps({"type": "gap", "from": self.cursor + 1,
                                                  "to": stored.first_seq - 1}).decode())
                    self.cursor = stored.first_seq - 1
                if stored.records:
                    await self._deliver(Message.of(self.cursor + 1, stored.last_seq, stored.records))
                # Everything before the ring is stored, so once the store has no more records
                # up to there, what lies between was dead-lettered or filtered: move on.
                self.cursor = max(self.cursor, stored.last_seq)
                if not stored.records:
                    self.cursor = max(self.cursor, read.first_seq - 1)
                continue
            if read.records:
                await self._deliver(Message.of(self.cursor + 1, read.last_seq, read.records))
            self.cursor = max(self.cursor, read.last_seq)
            if self.cursor >= topic.position:
                self.live = True  # no await between this check and joining: nothing slips by
                return


class Topic:
    """One pipeline's fan-out in one replica; runs while it has watchers."""

    def __init__(self, source: FeedSource, *, max_messages: int = 64, max_bytes: int = 1 << 20,
                 batch: int = 5000, wait_s: float = 20.0, on_empty: Callable[[Topic], None] | None = None) -> None:
        self.source = source
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.batch = batch
        self.wait_s = wait_s
        self.position = 0
        self.watchers: set[Watcher] = set()
        self._on_empty = on_empty
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.gone = False

    async def join(self, send: Send, after: int | None) -> Watcher:
        """A new client; `after` None means the live tail from now. A watcher of a pipeline
        that is gone comes back closed with 4404."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        await self._started.wait()
        watcher = Watcher(self, send, self.position if after is None else after, live=after is None)
        if self.gone:
            watcher.close(4404)
        else:
            self.watchers.add(watcher)
        return watcher

    def leave(self, watcher: Watcher) -> None:
        watcher.close()
        self.watchers.discard(watcher)
        if not self.watchers:
            if self._task is not None:
                self._task.cancel()
                self._task = None
            self._started = asyncio.Event()
            if self._on_empty is not None:
                self._on_empty(self)

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                self.position = (await self.source.read(None, wait_s=0.0, limit=0)).last_seq
                break
            except NotFoundError:
                return self._close_all(4404)
            except Exception as exc:  # noqa: BLE001 - the pipeline restarts: wait for it
                log.info("live: feed not reachable yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self._started.set()
        backoff = 0.5
        while True:
            try:
                read = await self.source.read(self.position, wait_s=self.wait_s, limit=self.batch)
            except NotFoundError:
                return self._close_all(4404)
            except Exception as exc:  # noqa: BLE001 - actor restarting: keep the sockets, retry
                log.info("live: feed read failed (%s); retrying in %.1f s", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            if read.behind:
                # The tail moved past the ring: each live watcher catches up on its own.
                for watcher in self.watchers:
                    watcher.live = False
                    watcher.wake()
                self.position = read.first_seq - 1
                continue
            if read.records:
                message = Message.of(self.position + 1, read.last_seq, read.records)
                for watcher in list(self.watchers):
                    watcher.offer(message)
            self.position = max(self.position, read.last_seq)

    def _close_all(self, code: int) -> None:
        self.gone = True
        self._started.set()
        for watcher in list(self.watchers):
            watcher.close(code)
