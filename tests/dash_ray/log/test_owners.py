"""Two owners of one log with a stale one's write caught in the middle: a replicated log's old
owner whose write arrives only after a newer owner opened (a partition that heals), and a file
log's writer frozen inside a group write while a newer owner opens. Nothing of the old owner's
is acknowledged after the newer owner started, and nothing is doubled or reordered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dash_ray.log.base import Log
from dash_ray.log.file import WriteAheadLog
from dash_ray.log.jetstream import JetStreamLog
from tests.dash_ray.log.conftest import NatsCluster, Proxy, WriterGate
from tests.dash_ray.log.replicated import delete_streams, make_postgres


@pytest.fixture(params=["jetstream", "jetstream-r3", "postgres"])
def owners(request, tmp_path) -> Iterator[tuple[Proxy, Callable[[bool], Log]]]:
    """The proxy in front of the backend's server, and how to make the log through it or not."""
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        proxy: Proxy = request.getfixturevalue("pg_proxy")
        relayed = dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        yield proxy, lambda through: make_postgres(relayed if through else dsn, tmp_path)
        return
    if request.param == "jetstream":
        proxy, direct, replicas = request.getfixturevalue("nats_proxy"), ["nats://127.0.0.1:4222"], 1
    else:
        cluster: NatsCluster = request.getfixturevalue("nats_cluster")
        proxy, direct, replicas = cluster.proxy, cluster.urls, 3
    name = f"o{uuid.uuid4().hex[:16]}"
    yield proxy, lambda through: JetStreamLog(name, servers=f"nats://127.0.0.1:{proxy.port}" if through else direct,
                                              replicas=replicas, ack_timeout=30.0)
    delete_streams({f"DASH_WAL_{name}"}, direct)


async def _recovered(log: Log) -> list[tuple[int, bytes]]:
    entries = await asyncio.to_thread(log.open)
    await log.close()
    return [(e.key, e.data) for e in entries]


async def test_a_stale_owners_write_that_arrives_late_is_refused(owners):
    proxy, make = owners
    old = make(True)
    await asyncio.to_thread(old.open)
    await old.append(1, b"old")
    release = proxy.hold()  # from here the old owner's requests wait in the network
    late = old.append(2, b"late")
    new = make(False)
    assert [(e.key, e.data) for e in await asyncio.to_thread(new.open)] == [(1, b"old")]
    await new.append(3, b"new")
    release()  # the old owner's write reaches the server now, after the newer owner's
    with pytest.raises(OSError, match="superseded"):
        await late
    await new.append(4, b"newer")
    await asyncio.gather(old.close(), new.close())
    assert await _recovered(make(False)) == [(1, b"old"), (3, b"new"), (4, b"newer")]


async def test_a_file_log_writer_frozen_in_a_group_is_waited_for_then_fenced(tmp_path: Path, writer_gate: WriterGate):
    old = WriteAheadLog(tmp_path)
    await asyncio.to_thread(old.open)
    await old.append(1, b"old")
    writer_gate.arm("fdatasync")  # the writer stops inside its next group, holding the owner lock
    frozen = old.append(2, b"frozen")
    await writer_gate.reached()
    new = WriteAheadLog(tmp_path)
    opening = asyncio.ensure_future(asyncio.to_thread(new.open))
    await asyncio.sleep(0.2)  # not a synchronisation: a window in which the open must not finish
    assert not opening.done(), "the new owner read the log while a group was half written"
    writer_gate.release()
    await frozen  # the group had its epoch checked before the newer owner took over: it stands
    assert [(e.key, e.data) for e in await opening] == [(1, b"old"), (2, b"frozen")]
    with pytest.raises(OSError, match="superseded"):
        await old.append(3, b"zombie")
    await new.append(3, b"new")
    await asyncio.gather(old.close(), new.close())
    assert await _recovered(WriteAheadLog(tmp_path)) == [(1, b"old"), (2, b"frozen"), (3, b"new")]
