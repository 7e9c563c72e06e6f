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
- a `gap` message is sent only for records asked for that no longer exist (retention);
- while the pipeline's feed does not answer (starting, restarting, failed), clients are told
  its status (`{"type": "status"}`) and kept: records follow once it runs, and a client that
  leaves meanwhile is let go at once.
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
from dash_ray.timeouts import timeout

__all__ = ["FeedSource", "Message", "StoredRead", "Topic", "Watcher", "status_text"]

log = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class StoredRead:
    """Records after a seq from the silver store, in seq order; `last_seq` is where the
    reader now is, `first_seq` the first seq after the one asked for that the store can
    answer for: the one right after it, unless retention removed those (a gap up to it)."""

    records: list[dict[str, Any]]
    last_seq: int
    first_seq: int


class FeedSource(Protocol):
    """Where a topic reads: the pipeline's feed (`read`, `after=None` for its position), its
    silver store (`stored`), and its status when the feed does not answer (`status`: the
    registry's word, `starting`, `running`, `restarting`, `failed`, ...). Each may raise;
    NotFoundError means the pipeline is gone."""

    async def read(self, after: int | None, *, wait_s: float, limit: int) -> LiveRead: ...

    async def stored(self, after: int, *, limit: int) -> StoredRead: ...

    async def status(self) -> str: ...


def status_text(status: str) -> str:
    """The control message telling a client the pipeline's status."""
    if status == "running":
        return orjson.dumps({"type": "status", "status": status}).decode()
    return orjson.dumps({"type": "status", "status": status,
                         "message": f"the pipeline is {status}; its records follow once it runs"}).decode()


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
    """One client: its cursor (None until it starts, for the live tail), whether it follows
    the live tail, its bounded queue, and a control message to send next. Kept small (slots,
    a plain list, a future only while waiting): a replica holds thousands."""

    topic: Topic
    send: Send
    cursor: int | None
    live: bool = False
    queue: list[Message] = field(default_factory=list)
    queued_bytes: int = 0
    closed: bool = False
    close_code: int | None = None
    overflows: int = 0
    notice: str | None = None
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

    def tell(self, text: str) -> None:
        """A control message to send before what comes next (a newer one replaces it)."""
        self.notice = text
        self.wake()

    def close(self, code: int | None = None) -> None:
        self.closed = True
        if code is not None and self.close_code is None:
            self.close_code = code
        self.wake()

    async def run(self) -> None:
        """Deliver to the client until it or the topic closes: the pipeline's status while
        its feed has not answered, then where the client starts (a data message with no
        records, so a client of the live tail knows the seq to resume after), then records."""
        if not await self._begin():
            return
        while not self.closed:
            if self.notice is not None:
                await self._tell_now()
                continue
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

    async def _begin(self) -> bool:
        topic = self.topic
        while not self.closed and not topic.started:
            if self.notice is not None:
                await self._tell_now()
            else:
                await self._wait()
        if self.closed:
            return False
        if self.notice is not None:
            await self._tell_now()
        if self.cursor is None:
            # No await between reading the position and joining the tail: nothing slips by.
            self.cursor, self.live = topic.position, True
        await self.send(orjson.dumps({"seq": self.cursor, "records": []}).decode())
        return True

    async def _tell_now(self) -> None:
        text, self.notice = self.notice, None
        if text is not None:
            await self.send(text)

    async def _wait(self, wait_s: float | None = None) -> None:
        """Until woken (a message, a close, the topic starting), or `wait_s` s."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with timeout(wait_s):
                await self._waiter
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiter = None

    async def _deliver(self, message: Message) -> None:
        assert self.cursor is not None
        shown = message.after(self.cursor)
        if shown is not None:
            await self.send(shown.text)
            self.cursor = shown.last_seq

    async def _ask(self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """A read of the feed or the store while catching up; None when it failed (after a
        pause; the pipeline restarts or the store is busy: the topic tells the client), or
        when the pipeline is gone (the watcher is closed with 4404)."""
        try:
            return await call(*args, **kwargs)
        except NotFoundError:
            self.close(4404)
        except Exception as exc:  # noqa: BLE001 - keep the client; try again shortly
            log.info("live: catching up failed (%s: %s); retrying", type(exc).__name__, exc)
            await self._wait(_RETRY_S)
        return None

    async def _catch_up(self) -> None:
        topic = self.topic
        assert self.cursor is not None
        while not self.closed:
            read = await self._ask(topic.source.read, self.cursor, wait_s=0.0, limit=topic.batch)
            if read is None:
                continue
            if read.behind:
                stored = await self._ask(topic.source.stored, self.cursor, limit=topic.batch)
                if stored is None:
                    continue
                moved = bool(stored.records) or stored.last_seq > self.cursor
                if self.cursor + 1 < stored.first_seq:
                    await self.send(orjson.dumps({"type": "gap", "from": self.cursor + 1,
                                                  "to": stored.first_seq - 1}).decode())
                    self.cursor, moved = stored.first_seq - 1, True
                if stored.records:
                    await self._deliver(Message.of(self.cursor + 1, stored.last_seq, stored.records))
                self.cursor = max(self.cursor, stored.last_seq)
                if not moved:
                    # Everything before the ring is stored; a store that has nothing past the
                    # cursor below the ring (a lake that lags the feed) must not stall it.
                    self.cursor = max(self.cursor, read.first_seq - 1)
                continue
            if read.records:
                await self._deliver(Message.of(self.cursor + 1, read.last_seq, read.records))
            self.cursor = max(self.cursor, read.last_seq)
            if self.cursor >= topic.position:
                self.live = True  # no await between this check and joining: nothing slips by
                return


_RETRY_S = 1.0


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
        self.started = False  # the feed answered: `position` is known
        self.watchers: set[Watcher] = set()
        self._on_empty = on_empty
        self._task: asyncio.Task[None] | None = None
        self._told: str | None = None  # the status last told, while not running
        self.gone = False

    async def join(self, send: Send, after: int | None) -> Watcher:
        """A new client; `after` None means the live tail from when it starts. Returns at
        once, also while the pipeline's feed does not answer (the watcher tells its client
        the status meanwhile). A watcher of a pipeline that is gone comes back closed (4404)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        watcher = Watcher(self, send, after)
        if self.gone:
            watcher.close(4404)
        else:
            if self._told is not None:
                watcher.notice = status_text(self._told)
            self.watchers.add(watcher)
        return watcher

    def leave(self, watcher: Watcher) -> None:
        watcher.close()
        self.watchers.discard(watcher)
        if not self.watchers:
            if self._task is not None:
                self._task.cancel()
                self._task = None
            self.started = False
            self._told = None
            if self._on_empty is not None:
                self._on_empty(self)

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                if not self.started:
                    self.position = (await self.source.read(None, wait_s=0.0, limit=0)).last_seq
                    read = None
                else:
                    read = await self.source.read(self.position, wait_s=self.wait_s, limit=self.batch)
            except NotFoundError:
                return self._close_all(4404)
            except Exception as exc:  # noqa: BLE001 - not running (yet): keep the sockets, retry
                log.info("live: feed not reachable (%s); retrying in %.1f s", type(exc).__name__, backoff)
                if not await self._note_status():
                    return self._close_all(4404)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            if self._told is not None:
                self._tell("running")
            if read is None:
                self.started = True
                for watcher in list(self.watchers):
                    watcher.wake()
                continue
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

    async def _note_status(self) -> bool:
        """After the feed failed: ask the pipeline's status and tell the watchers when it is
        news (`running` is not: the feed is about to answer). False: the pipeline is gone."""
        try:
            status = await self.source.status()
        except NotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001 - the registry may be away too: say nothing new
            log.info("live: status not known (%s)", type(exc).__name__)
            return True
        if status != "running" and status != self._told:
            self._tell(status)
        return True

    def _tell(self, status: str) -> None:
        self._told = None if status == "running" else status
        text = status_text(status)
        for watcher in list(self.watchers):
            watcher.tell(text)

    def _close_all(self, code: int) -> None:
        self.gone = True
        for watcher in list(self.watchers):
            watcher.close(code)
