"""The `mqtt` source against the real Mosquitto broker (127.0.0.1:1883), inside a pipeline's
process in plain Python (`PipelineHost`, no Ray): messages become records with their topic,
arrays several, non-JSON payloads dead-lettered without holding up the rest, messages
published while the pipeline is stopped arrive after its restart, and a message the broker
sends again after an append that was never acknowledged is not stored twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dash_ray.ingest.batch import RawBatch
from dash_ray.pipeline.host import PipelineHost
from dash_ray.query.dead import dead_letters
from dash_ray.settings import PipelineSettings
from dash_ray.sources.base import FeedContext
from dash_ray.sources.mqtt import MqttFeed
from dash_ray.sources.mqtt_journal import Journal
from dash_ray.spec import parse_spec
from tests.mqtt_broker import Publisher, unique_prefix
from tests.waiting import until

FIELDS = {"n": {"path": "$.n", "type": "int", "required": True},
          "topic": {"path": "$._topic", "type": "string"}}


def spec(pipeline_id: str, prefix: str, **source: Any) -> dict[str, Any]:
    # A client id of the test's own, and a session the shared broker forgets a minute after.
    return {"id": pipeline_id, "source": {"kind": "mqtt", "url": "mqtt://127.0.0.1:1883",
                                          "topics": [f"{prefix}/+/reading"], "session_expiry": 60,
                                          "client_id": f"dash-test-{prefix.rsplit('/', 1)[1]}", **source},
            "mapping": {"fields": FIELDS}, "flush": {"records": 100_000, "seconds": 3600}}


def settings(tmp_path: Path) -> PipelineSettings:
    return PipelineSettings(wal_root=str(tmp_path / "wal"), lake_url=str(tmp_path / "lake"))


async def no_dsn() -> str | None:
    return None


async def started(data: dict[str, Any], tmp_path: Path) -> PipelineHost:
    host = PipelineHost(data, settings(tmp_path), address="127.0.0.1")
    await host.start(no_dsn)
    await until(lambda: host.health().get("source_state", {}).get("connected"), timeout=30, what="connected")
    return host


def numbers(host: PipelineHost) -> list[int]:
    return sorted(r["data"]["n"] for r in host.core.records(limit=100_000))


@pytest.fixture()
def publisher() -> Any:
    p = Publisher()
    yield p
    p.close()


async def test_messages_become_records_with_their_topic_arrays_several_and_bad_payloads_dead(
        tmp_path: Path, publisher: Publisher) -> None:
    prefix = unique_prefix()
    host = await started(spec("mq-basic", prefix), tmp_path)
    try:
        publisher.publish(f"{prefix}/a/reading", {"n": 1})
        publisher.publish(f"{prefix}/b/reading", [{"n": 2}, {"n": 3}])
        publisher.publish(f"{prefix}/c/reading", b"not json at all")
        publisher.publish(f"{prefix}/a/other", {"n": 99})  # not subscribed
        publisher.publish(f"{prefix}/d/reading", {"n": 4})
        records = await until(lambda: len(rs := host.core.records(limit=100)) >= 4 and rs, timeout=30,
                              what="four records")
        assert [(r["data"]["n"], r["data"]["topic"]) for r in records] == [
            (1, f"{prefix}/a/reading"), (2, f"{prefix}/b/reading"), (3, f"{prefix}/b/reading"),
            (4, f"{prefix}/d/reading")]
        state = host.health()["source_state"]
        assert state["messages"] == 4 and state["records"] == 5 and state["not_json"] == 1
        assert state["connected"] and state["last_error"] is None and state["last_message_at"].endswith("Z")
        assert host.health()["counters"]["dead"] == 1
        await host.core.flush()
        [dead] = dead_letters(host.core.lake, "mq-basic", 10)
        assert dead["record"] == "not json at all" and dead["rule"] == "object", dead
    finally:
        await host.stop()


async def test_messages_published_while_the_pipeline_is_stopped_arrive_after_its_restart(
        tmp_path: Path, publisher: Publisher) -> None:
    prefix = unique_prefix()
    data = spec("mq-restart", prefix)
    host = await started(data, tmp_path)
    publisher.publish_many(f"{prefix}/x/reading", [{"n": n} for n in range(10)])
    await until(lambda: len(numbers(host)) == 10, timeout=30, what="the first ten")
    await host.stop()
    publisher.publish_many(f"{prefix}/x/reading", [{"n": n} for n in range(10, 50)])  # nobody listening
    host = await started(data, tmp_path)
    try:
        await until(lambda: numbers(host) == list(range(50)), timeout=30, what="all fifty, once each")
    finally:
        await host.stop()


async def test_a_batch_appended_but_never_acknowledged_to_the_broker_is_not_stored_twice(
        tmp_path: Path, publisher: Publisher) -> None:
    # A pipeline whose process stops between a durable append and the PUBACK: the broker sends
    # the batch's messages again (flagged dup) to the next session; they are recognised.
    prefix = unique_prefix()
    data = spec("mq-dup", prefix)
    host = PipelineHost({**data, "source": {"kind": "push"}}, settings(tmp_path), address="127.0.0.1")
    await host.start(no_dsn)
    source = parse_spec(data).source
    context = FeedContext("mq-dup", tmp_path / "state")
    appended = asyncio.Event()

    async def stops_after_the_append(batches: list[RawBatch]) -> list[Any]:
        await host.core.ingest(batches)
        appended.set()
        await asyncio.Event().wait()  # the process "dies" here: cancelled before any PUBACK
        return []

    async def run(feed: MqttFeed, ingest: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(feed.run(ingest))
        await until(lambda: feed.state()["connected"], timeout=30, what="connected")  # type: ignore[index]
        return task

    try:
        first = await run(MqttFeed.from_spec(source, context), host.core.ingest)  # the session exists
        first.cancel()
        publisher.publish_many(f"{prefix}/x/reading", [{"n": n} for n in range(20)])
        second = await run(MqttFeed.from_spec(source, context), stops_after_the_append)
        await asyncio.wait_for(appended.wait(), 30)
        second.cancel()
        stored = len(numbers(host))
        assert 0 < stored
        third_feed = MqttFeed.from_spec(source, context)
        third = await run(third_feed, host.core.ingest)
        publisher.publish(f"{prefix}/x/reading", {"n": 20})
        await until(lambda: 20 in numbers(host), timeout=30, what="the next message")
        assert numbers(host) == list(range(21)), "a message is missing or stored twice"
        skipped = third_feed.state()["redelivered_skipped"]  # type: ignore[index]
        assert skipped == stored
        third.cancel()
    finally:
        await host.stop()


def test_the_journal_forgets_the_oldest_digest_past_its_window(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", window=3)
    batch = RawBatch(payload=b"{}\n", count=1, received_at_us=1, idempotency_key="k")
    for key in ("a", "b", "a", "c"):
        journal.begin(batch, [key])
        journal.stored()
    again = Journal.load(tmp_path / "j", window=3)
    assert again.pending is not None and again.pending.digests == ["c"]
    again.stored()
    assert again.seen("a") and not again.seen("a")  # the first "a" left the window
    assert again.seen("c") and again.seen("b") and not again.seen("b")
    again.close()


def test_the_journal_file_keeps_about_its_window_of_lines(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", window=4)
    batch = RawBatch(payload=b"{}\n", count=1, received_at_us=1, idempotency_key="k")
    for n in range(100):
        journal.begin(batch, [f"d{n}"])
        journal.stored()
    journal.close()
    assert len((tmp_path / "j").read_bytes().splitlines()) <= 4 * 4 + 1
    again = Journal.load(tmp_path / "j", window=4)
    again.stored()
    assert [again.seen(f"d{n}") for n in range(95, 100)] == [False, True, True, True, True]


async def test_a_topic_the_spec_no_longer_has_is_unsubscribed_from_the_session(
        tmp_path: Path, publisher: Publisher) -> None:
    prefix = unique_prefix()
    data = spec("mq-topics", prefix)
    data["source"]["topics"] = [f"{prefix}/old", f"{prefix}/new"]
    host = await started(data, tmp_path)
    publisher.publish(f"{prefix}/old", {"n": 1})
    await until(lambda: numbers(host) == [1], timeout=30, what="the old topic's message")
    await host.stop()
    data["source"]["topics"] = [f"{prefix}/new"]
    host = await started(data, tmp_path)
    try:
        publisher.publish(f"{prefix}/old", {"n": 2})  # the session no longer subscribes to it
        publisher.publish(f"{prefix}/new", {"n": 3})
        await until(lambda: 3 in numbers(host), timeout=30, what="the new topic's message")
        assert numbers(host) == [1, 3]  # 1 from before the restart
    finally:
        await host.stop()


async def test_a_purge_ends_the_broker_session_so_the_same_id_starts_empty(
        tmp_path: Path, publisher: Publisher) -> None:
    """Messages the broker queued for a pipeline deleted with `?purge=true` must not reach a
    pipeline created again under the same id: the purge makes the broker drop the session
    (its password read from the platform's named secrets, as the pipeline does)."""
    from dash_ray.lifecycle.purge import purge
    from dash_ray.registry.core import catalog_opener
    from tests.conftest import platform_settings

    prefix = unique_prefix()
    data = spec("mq-purged", prefix, username="dash", password={"secret": "broker"})
    platform = platform_settings(tmp_path / "home")
    catalog = catalog_opener(platform)()
    catalog.secrets.put("broker", "anything")  # the shared broker allows anonymous clients: any value
    host = await started(data, tmp_path / "first")
    publisher.publish(f"{prefix}/x/reading", {"n": 1})
    await until(lambda: numbers(host) == [1], timeout=30, what="the first record")
    await host.stop()
    publisher.publish_many(f"{prefix}/x/reading", [{"n": n} for n in range(2, 12)])  # queued for the session

    await purge(parse_spec(data), catalog, settings=platform)

    host = await started(data, tmp_path / "again")  # the same id (and client id), created again
    try:
        publisher.publish(f"{prefix}/x/reading", {"n": 100})
        await until(lambda: numbers(host) == [100], timeout=30, what="only what was published after")
        await asyncio.sleep(0.5)
        assert numbers(host) == [100], "messages queued for the purged pipeline's session arrived"
    finally:
        await host.stop()
