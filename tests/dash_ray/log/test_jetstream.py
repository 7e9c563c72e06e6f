"""What the JetStream log does beyond the contract, on the real server at 127.0.0.1:4222: entries
larger than a NATS message, group commit, and trims that never split an entry."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from dash_ray.log.base import Entry
from dash_ray.log.jetstream import JetStreamLog
from tests.dash_ray.log.replicated import delete_streams

SERVERS = ["nats://127.0.0.1:4222"]


@pytest.fixture
def name(nats_proxy) -> Iterator[str]:  # nats_proxy: fails the test when NATS is not there
    name = f"t{uuid.uuid4().hex[:16]}"
    yield name
    delete_streams({f"DASH_WAL_{name}", f"S{name}"}, SERVERS)


async def _reopened(name: str) -> list[tuple[int, bytes]]:
    log = JetStreamLog(name)
    entries = await asyncio.to_thread(log.open)
    await log.close()
    return [(e.key, e.data) for e in entries]


async def test_entries_larger_than_a_message_round_trip_and_trim_whole(name):
    log = JetStreamLog(name)
    await asyncio.to_thread(log.open)
    big = os.urandom(3 * 2**20 + 17)  # the server's messages are at most 1 MiB by default
    calls = [(1, big), (2, b"small"), (3, big[:2**20]), (4, b"")]
    for key, data in calls:  # one at a time: each entry starts a message of its own
        await log.append(key, data)
    assert log.stats.fsyncs >= 6, "the large entries took several messages each"
    await log.trim(1)
    await log.close()
    assert await _reopened(name) == calls[1:]


async def test_concurrent_appends_share_messages(name):
    log = JetStreamLog(name)
    await asyncio.to_thread(log.open)
    await asyncio.gather(*(log.append(k, b"%d" % k) for k in range(1, 501)))
    assert log.stats.appended == 500 and log.stats.fsyncs < 500 / 4  # group commit
    await log.close()
    assert await _reopened(name) == [(k, b"%d" % k) for k in range(1, 501)]


async def test_a_trim_keeps_an_entry_whose_end_shares_a_message_with_a_later_one(name):
    log = JetStreamLog(name)
    await asyncio.to_thread(log.open)
    big = os.urandom(2 * 2**20)
    first = log.append(0, big)  # keeps the writer busy for a few round trips, so that
    await asyncio.gather(first, log.append(1, big), log.append(2, b"after"))  # 1 ends beside 2
    await log.trim(1)
    await log.close()
    # Whole or not at all (not at all only if the writer took 1 before 2 came: a rare timing).
    assert await _reopened(name) in ([(1, big), (2, b"after")], [(2, b"after")])


async def test_logs_sharing_a_stream_keep_apart(name):
    a, b = JetStreamLog("a", stream=f"S{name}"), JetStreamLog("b", stream=f"S{name}")
    await asyncio.gather(asyncio.to_thread(a.open), asyncio.to_thread(b.open))
    for k in range(1, 6):
        await asyncio.gather(a.append(k, b"a%d" % k), b.append(k, b"b%d" % k))
    await a.trim(5)
    a_again = JetStreamLog("a", stream=f"S{name}")  # a new owner of a; b's owner is untouched
    assert await asyncio.to_thread(a_again.open) in ([], [Entry(5, b"a5")])  # its last message stays
    await b.append(6, b"b6")
    with pytest.raises(OSError, match="superseded"):
        await a.append(6, b"zombie")
    await asyncio.gather(a.close(), b.close(), a_again.close())
    b_again = JetStreamLog("b", stream=f"S{name}")
    assert [e.data for e in await asyncio.to_thread(b_again.open)] == [b"b%d" % k for k in range(1, 7)]
    await b_again.close()
