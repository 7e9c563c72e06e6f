"""What the contract suite needs to drive the replicated logs on their real servers: a log name
per test folder, a crash, a missing entry (their "damage"), and clean-up after each test."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from dash_ray.log.jetstream import JetStreamLog
from dash_ray.log.postgres import PostgresLog
from dash_ray.log.streams import Names

T = TypeVar("T")


def log_name(path: Path) -> str:
    """A name for the log "at" `path`: the same path reopens the same log."""
    return "t" + hashlib.sha1(str(path).encode()).hexdigest()[:20]


def run_async(call: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to the end on a loop of its own (callers may be inside a running loop)."""
    result: list[Any] = []

    def target() -> None:
        result.append(asyncio.run(call()))  # type: ignore[arg-type]

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert result, "the call did not finish"
    return result[0]


async def _jetstream(call: Callable[[Any], Awaitable[T]], servers: list[str]) -> T:
    import nats

    nc = await nats.connect(servers)
    try:
        return await call(nc)
    finally:
        await nc.close()


def delete_streams(streams: set[str], servers: list[str]) -> None:
    async def delete(nc: Any) -> None:
        js = nc.jetstream()
        for stream in streams:
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)

    run_async(lambda: _jetstream(delete, servers))


def crash_jetstream(log: JetStreamLog) -> None:
    """Stop as a lost node would: queued appends vanish (their futures never resolve), the
    connection is reset with nothing more sent, no clean close runs."""
    assert log._loop is not None and log._thread is not None

    async def crash() -> None:
        with log._lock:
            log._pending.clear()
            log._state = "closed"
        log._closing = True
        log._nc._transport._io_writer.transport.abort()
        if log._writer is not None:
            log._writer.cancel()
        with contextlib.suppress(Exception):
            await log._nc.close()
        asyncio.get_running_loop().stop()

    asyncio.run_coroutine_threadsafe(crash(), log._loop)
    log._thread.join(10)
    assert not log._thread.is_alive(), "the log's loop did not stop"


def damage_jetstream(path: Path, servers: list[str], stream: str | None = None) -> None:
    """Delete an entry message from the middle of the log's subject (what an operator's mistake
    or a store that lost a message would leave): acknowledged entries follow the hole."""
    names = Names(log_name(path), stream)

    async def delete(nc: Any) -> None:
        js = nc.jetstream()
        info = await js.stream_info(names.stream)
        seqs = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(Exception):  # deleted or purged
                msg = await js.get_msg(names.stream, seq)
                if msg.subject == names.subject and "Dash-Epoch" in (msg.headers or {}):
                    seqs.append(seq)
        assert len(seqs) >= 3, f"too few messages to damage between others: {seqs}"
        await js.delete_msg(names.stream, seqs[len(seqs) // 2])

    run_async(lambda: _jetstream(delete, servers))


def damage_postgres(dsn: str, path: Path) -> None:
    """Delete a row from the middle of the log's entries: acknowledged entries follow the hole."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""DELETE FROM dash_wal_entries WHERE log = %(log)s AND seq = (
                            SELECT (min(seq) + max(seq)) / 2 FROM dash_wal_entries WHERE log = %(log)s)""",
                     {"log": log_name(path)})


def make_postgres(dsn: str, path: Path) -> PostgresLog:
    return PostgresLog(dsn, log_name(path))
