"""The `Log` Protocol's guarantees (dash_ray/log/base.py), checked against every backend: the
file log, and the replicated ones on the real NATS JetStream (127.0.0.1:4222) and PostgreSQL
(a fresh database per session); a missing server fails these tests, it never skips them.

A backend joins by adding a builder to BUILDERS: given the test's request, a `Backend` that
knows how to make an instance over storage at a path (making another over the same path is a
reopen), how to crash one, how to make its next write fail for real, and how to damage what it
stored."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dash_ray.errors import WalCorruptError
from dash_ray.log.base import Entry, Log
from dash_ray.log.file import WriteAheadLog
from dash_ray.log.jetstream import JetStreamLog
from tests.dash_ray.log.conftest import FailingWrites, NatsCluster, Proxy, abandon
from tests.dash_ray.log.replicated import (
    crash_jetstream,
    damage_jetstream,
    damage_postgres,
    delete_streams,
    log_name,
    make_postgres,
)


@dataclass(frozen=True)
class Backend:
    name: str
    make: Callable[[Path], Log]
    crash: Callable[[Log], None]  # stop without a clean close; nothing unacknowledged is flushed
    arm_failure: Callable[[], None]  # the next write fails for real
    damage: Callable[[Path], None]  # lose or change a stored entry with acknowledged ones after it


def _file_damage(path: Path) -> None:
    first = sorted(path.glob("*.wal"))[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))


def _file(request: pytest.FixtureRequest) -> Backend:
    failing: FailingWrites = request.getfixturevalue("failing_writes")
    return Backend(
        name="file",
        # Small segments so that appends roll and trims delete whole files.
        make=lambda path: WriteAheadLog(path, segment_bytes=2048),
        crash=lambda log: abandon(log),  # type: ignore[arg-type]
        arm_failure=lambda: failing.arm(),  # the disk fills up mid-write
        damage=_file_damage,
    )


def _jetstream(request: pytest.FixtureRequest, *, replicas: int = 1, shared: bool = False) -> Backend:
    """The shared server at 127.0.0.1:4222 (R1), or a cluster of three this session starts (R3);
    each log in a stream of its own, or all of a test's logs in one stream."""
    if replicas == 1:
        proxy: Proxy = request.getfixturevalue("nats_proxy")
        direct = ["nats://127.0.0.1:4222"]
    else:
        cluster: NatsCluster = request.getfixturevalue("nats_cluster")
        proxy, direct = cluster.proxy, cluster.urls
    stream = f"SHARED_{uuid.uuid4().hex[:12]}" if shared else None
    made: set[str] = set()
    request.addfinalizer(lambda: delete_streams(made, direct))

    def make(path: Path) -> Log:
        log = JetStreamLog(log_name(path), servers=f"nats://127.0.0.1:{proxy.port}", replicas=replicas,
                           stream=stream, ack_timeout=3.0)  # a short ack timeout notices a partition
        made.add(log.stream)
        return log

    # A partition: the publishes leave, nothing arrives, no acknowledgement comes back.
    return Backend(name="jetstream", make=make, crash=crash_jetstream,  # type: ignore[arg-type]
                   arm_failure=proxy.stall, damage=lambda path: damage_jetstream(path, direct, stream))


def _postgres(request: pytest.FixtureRequest) -> Backend:
    dsn: str = request.getfixturevalue("pg_dsn")
    proxy: Proxy = request.getfixturevalue("pg_proxy")
    relayed = dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    # The connection is lost: the statement cannot be sent.
    return Backend(name="postgres", make=lambda path: make_postgres(relayed, path),
                   crash=lambda log: abandon(log),  # type: ignore[arg-type]
                   arm_failure=proxy.cut, damage=lambda path: damage_postgres(dsn, path))


BUILDERS = {"file": _file, "jetstream": _jetstream, "jetstream-shared": lambda r: _jetstream(r, shared=True),
            "jetstream-r3": lambda r: _jetstream(r, replicas=3), "postgres": _postgres}


@pytest.fixture(params=list(BUILDERS))
def backend(request) -> Backend:
    return BUILDERS[request.param](request)


def _data(key: int, n: int = 0) -> bytes:
    return b"%d:%d:" % (key, n) + b"p" * (key * 7 % 200)


async def _open(backend: Backend, path: Path) -> tuple[Log, list[Entry]]:
    log = backend.make(path)
    entries = await asyncio.to_thread(log.open)
    return log, entries


async def _recovered(backend: Backend, path: Path) -> list[tuple[int, bytes]]:
    log, entries = await _open(backend, path)
    await log.close()
    return [(e.key, e.data) for e in entries]


async def test_a_new_log_opens_empty(backend, tmp_path):
    assert await _recovered(backend, tmp_path / "log") == []


async def test_appends_are_recovered_in_call_order_exactly_once(backend, tmp_path):
    log, _ = await _open(backend, tmp_path)
    # Keys may repeat (they never decrease); data may be empty; appends run concurrently.
    calls = [(k // 3, _data(k // 3, k) if k % 5 else b"") for k in range(3, 300)]
    await asyncio.gather(*(log.append(k, d) for k, d in calls))
    assert log.stats.appended == len(calls) and log.stats.last_key == calls[-1][0]
    await log.close()
    assert await _recovered(backend, tmp_path) == calls


async def test_an_acknowledged_append_survives_a_crash(backend, tmp_path):
    log, _ = await _open(backend, tmp_path)
    for key in range(1, 30):
        await log.append(key, _data(key))
    backend.crash(log)
    assert await _recovered(backend, tmp_path) == [(k, _data(k)) for k in range(1, 30)]


async def test_keys_must_not_decrease(backend, tmp_path):
    log, _ = await _open(backend, tmp_path)
    await log.append(5, b"a")
    with pytest.raises(ValueError):
        log.append(4, b"b")
    await log.append(5, b"c")  # the refusal left the log usable
    await log.close()
    assert await _recovered(backend, tmp_path) == [(5, b"a"), (5, b"c")]


async def test_trim_never_removes_a_key_above_the_watermark(backend, tmp_path):
    log, _ = await _open(backend, tmp_path)
    watermark = 0
    for start in range(1, 400, 40):
        appends = [log.append(k, _data(k)) for k in range(start, start + 40)]
        watermark = start - 1
        await asyncio.gather(log.trim(watermark), *appends)  # trims race the appends
    await log.close()
    keys = [k for k, _ in await _recovered(backend, tmp_path)]
    assert keys == list(range(keys[0], 401)) and keys[0] <= watermark + 1, keys[:5]


async def test_concurrent_trims_all_return_and_the_highest_wins(backend, tmp_path):
    log, _ = await _open(backend, tmp_path)
    await asyncio.gather(*(log.append(k, _data(k)) for k in range(1, 200)))
    await asyncio.wait_for(asyncio.gather(log.trim(20), log.trim(150), log.trim(90)), 10)
    await log.close()
    keys = [k for k, _ in await _recovered(backend, tmp_path)]
    assert keys == list(range(keys[0], 200)) and keys[0] <= 151


async def test_trim_on_a_log_that_is_not_open_does_nothing(backend, tmp_path):
    log = backend.make(tmp_path)
    await log.trim(10)
    await asyncio.to_thread(log.open)
    await log.append(1, b"x")
    await log.close()
    await log.trim(10)
    assert await _recovered(backend, tmp_path) == [(1, b"x")]


async def test_close_finishes_pending_appends(backend, tmp_path):
    log, _ = await _open(backend, tmp_path)
    futures = [log.append(k, _data(k)) for k in range(1, 100)]
    await log.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert [k for k, _ in await _recovered(backend, tmp_path)] == list(range(1, 100))


async def test_close_is_idempotent_and_appends_after_it_are_refused(backend, tmp_path):
    unopened = backend.make(tmp_path / "unopened")
    await unopened.close()
    await unopened.close()
    log, _ = await _open(backend, tmp_path / "log")
    await log.append(1, b"x")
    await log.close()
    await log.close()
    with pytest.raises(RuntimeError):
        log.append(2, b"y")
    with pytest.raises(RuntimeError):
        log.open()


async def test_a_failed_write_fails_its_appends_and_leaves_nothing_of_them(backend, tmp_path):
    log, _ = await _open(backend, tmp_path)
    for key in range(1, 4):
        await log.append(key, _data(key))
    backend.arm_failure()
    doomed = [log.append(k, _data(k)) for k in range(4, 9)]
    results = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results), results
    with pytest.raises(RuntimeError):
        log.append(9, b"after")  # a failed log takes nothing more until it is reopened
    await log.close()
    assert await _recovered(backend, tmp_path) == [(k, _data(k)) for k in range(1, 4)]


async def test_damage_is_refused_not_dropped(backend, tmp_path):
    log, _ = await _open(backend, tmp_path)
    for start in range(1, 60, 10):  # several groups, so that damage can have some on each side
        await asyncio.gather(*(log.append(k, _data(k)) for k in range(start, start + 10)))
    await log.close()
    backend.damage(tmp_path)
    for _ in range(2):  # a refused open changed nothing: it refuses again
        with pytest.raises(WalCorruptError):
            backend.make(tmp_path).open()


async def test_a_newer_owner_fences_the_older_one(backend, tmp_path):
    old, _ = await _open(backend, tmp_path)
    await old.append(1, b"a")
    new, entries = await _open(backend, tmp_path)
    assert [(e.key, e.data) for e in entries] == [(1, b"a")] and new.epoch > old.epoch > 0
    with pytest.raises(OSError, match="superseded"):
        await old.append(2, b"zombie")
    with pytest.raises(RuntimeError):
        old.append(3, b"zombie")  # the fenced log has failed
    await new.append(2, b"b")
    await old.close()
    await new.close()
    assert await _recovered(backend, tmp_path) == [(1, b"a"), (2, b"b")]


async def test_a_superseded_owner_cannot_trim(backend, tmp_path):
    old, _ = await _open(backend, tmp_path)
    await asyncio.gather(*(old.append(k, _data(k)) for k in range(1, 40)))
    new, _ = await _open(backend, tmp_path)
    with pytest.raises(OSError, match="superseded"):
        await old.trim(39)
    await old.close()
    await new.close()
    assert [k for k, _ in await _recovered(backend, tmp_path)] == list(range(1, 40))


async def test_a_zombie_with_appends_in_flight_adds_nothing_after_the_newer_owner(backend, tmp_path):
    """The old owner keeps appending while the new one opens: what the new owner recovers is
    exactly what the old one had acknowledged, in order, nothing of the old one's lands after
    it, and the old one's next append after the open fails. The new owner's entries follow."""
    old, _ = await _open(backend, tmp_path)
    await old.append(0, b"first")
    calls: list[tuple[int, bytes]] = []
    futures: list[asyncio.Future[None]] = []
    opening = asyncio.ensure_future(_open(backend, tmp_path))
    refused = False
    while not refused and len(calls) < 50_000:
        done = opening.done()
        call = (len(calls) + 1, _data(len(calls) + 1))
        try:
            futures.append(old.append(*call))
            calls.append(call)
        except RuntimeError:
            refused = True  # the old log has failed: fenced
        if done:
            break
        await asyncio.sleep(0)  # let the open, and the old log's acknowledgements, go on
    new, entries = await opening
    results = await asyncio.gather(*futures, return_exceptions=True)
    acknowledged = [(0, b"first")] + [c for c, r in zip(calls, results, strict=True) if r is None]
    assert [(e.key, e.data) for e in entries] == acknowledged
    assert all(r is None or isinstance(r, OSError) for r in results)
    assert refused or isinstance(results[-1], OSError), "an append after the newer open succeeded"
    await new.append(10**6, b"new")
    await asyncio.gather(old.close(), new.close())
    assert await _recovered(backend, tmp_path) == acknowledged + [(10**6, b"new")]
