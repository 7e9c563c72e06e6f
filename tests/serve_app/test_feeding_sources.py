"""The feeding sources on the platform (Ray, the registry, the web tier): an `mqtt` pipeline
over the real Mosquitto broker loses nothing and stores nothing twice across a SIGKILL of its
actor's process in the middle of a burst; a `pipeline` pipeline follows another one's mapped
records through both actors, shows its `source_state`, and a cycle is a 422."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from typing import Any

import duckdb
import pytest
import ray

from dash_ray.lake import Lake
from tests.conftest import Running
from tests.mqtt_broker import Publisher, unique_prefix
from tests.waiting import wait_for

pytestmark = pytest.mark.ray


def stored(lake_url: str, pipeline_id: str, column: str = "n") -> list[int]:
    dataset = Lake.from_url(lake_url).dataset("silver", pipeline_id)
    if dataset is None:
        return []
    return [row[0] for row in duckdb.sql(f"SELECT {column} FROM dataset ORDER BY {column}").fetchall()]


def actor_pid(platform: Running, pipeline_id: str) -> int:
    actor = ray.get_actor(f"pipeline:{pipeline_id}", namespace=platform.settings.namespace)
    return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_of_an_mqtt_pipeline_during_a_burst_loses_nothing_and_stores_nothing_twice(
        platform: Running) -> None:
    pipeline_id = f"mqtt-{uuid.uuid4().hex[:6]}"
    prefix = unique_prefix()
    platform.client.deploy({
        "id": pipeline_id,
        "source": {"kind": "mqtt", "url": "mqtt://127.0.0.1:1883", "topics": [f"{prefix}/#"], "batch": 200,
                   "session_expiry": 60},
        "mapping": {"fields": {"n": {"path": "$.n", "type": "int", "required": True},
                               "topic": {"path": "$._topic", "type": "string"}}},
        "flush": {"records": 500, "seconds": 0.3}})
    wait_for(lambda: (platform.client.get(pipeline_id).source_state or {}).get("connected"), timeout=60,
             what="the pipeline connected to the broker")
    total = 3000
    publisher = Publisher()
    published = threading.Event()

    def stored_seq(http: Any) -> int:
        try:
            return int(http.get(f"/v1/pipelines/{pipeline_id}").json()["counters"]["last_seq"])
        except Exception:  # noqa: BLE001 - restarting: as far as known, nothing more
            return 0

    def burst() -> None:
        with platform.http() as http:
            for first in range(0, total, 100):
                # Mosquitto holds at most 1,000 messages (its default max_queued_messages) for
                # a client that is away or behind, and drops the rest (its log says so): the
                # fleet keeps at most 600 beyond what the pipeline has stored, restart or not.
                while first - stored_seq(http) > 500:
                    time.sleep(0.05)  # the fleet's pace
                publisher.publish_many(f"{prefix}/s{first % 7}", [{"n": n} for n in range(first, first + 100)])
        published.set()

    thread = threading.Thread(target=burst, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(stored(platform.settings.lake_url, pipeline_id)) >= total // 4, timeout=120,
                 what="a fifth of the burst stored")
        os.kill(actor_pid(platform, pipeline_id), signal.SIGKILL)
        thread.join(600)
        assert published.is_set(), "the burst was not published"
    finally:
        publisher.close()
    wait_for(lambda: platform.client.get(pipeline_id).restarts >= 1, timeout=60, what="the restart")
    def progress() -> tuple[int, int, list[int], Any]:
        numbers = stored(platform.settings.lake_url, pipeline_id)
        missing = sorted(set(range(total)) - set(numbers))
        return len(numbers), len(numbers) - len(set(numbers)), missing[:10], platform.client.get(pipeline_id)

    try:
        wait_for(lambda: not progress()[2], timeout=180, what="every published message in the lake")
    except AssertionError as exc:
        count, twice, missing, view = progress()
        raise AssertionError(f"{count} stored, {twice} twice, missing {missing}; {view}") from exc
    count, twice, _, _ = progress()
    assert (count, twice) == (total, 0), "a message is stored twice"
    state = platform.client.get(pipeline_id).source_state
    assert state is not None and state["connected"]


def test_a_pipeline_follows_another_ones_mapped_records_and_cycles_are_refused(platform: Running) -> None:
    producer, follower = f"prod-{uuid.uuid4().hex[:6]}", f"foll-{uuid.uuid4().hex[:6]}"
    # The follower first: its producer does not exist yet, so it waits for it (no 422).
    platform.client.deploy({
        "id": follower, "source": {"kind": "pipeline", "from": producer},
        "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}, "up_seq": {"path": "$.seq", "type": "int"}}},
        "flush": {"records": 100, "seconds": 0.2}})
    wait_for(lambda: "does not exist" in str((platform.client.get(follower).source_state or {}).get("last_error")),
             timeout=60, what="the follower waiting for its producer")
    created = platform.client.deploy({
        "id": producer, "source": {"kind": "push"},
        "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}, "filter": "n % 3 <> 0"},
        "flush": {"records": 100, "seconds": 0.2}})
    for first in range(0, 300, 50):
        platform.client.ingest(producer, [{"n": n} for n in range(first, first + 50)], secret=created.ingest_secret)
    expected = [n for n in range(300) if n % 3]
    wait_for(lambda: stored(platform.settings.lake_url, follower) == expected, timeout=120,
             what="the producer's mapped records in the follower's lake, once each")
    state = platform.client.get(follower).source_state
    assert state is not None and state["from"] == producer and state["position"] == 300
    # A cycle: the producer following its follower.
    with platform.http() as http:
        answer = http.put(f"/v1/pipelines/{producer}", json={
            "id": producer, "source": {"kind": "pipeline", "from": follower},
            "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}}})
    assert answer.status_code == 422
    [problem] = answer.json()["error"]["problems"]
    assert problem["path"] == "source.from" and f"{producer} -> {follower} -> {producer}" in problem["message"]
