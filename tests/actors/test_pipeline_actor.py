"""The pipeline actor on a real local Ray: made by name in its namespace on an ingestor node,
each method reaching the pipeline's core (over Ray and over the ingest channel), errors
crossing the actor boundary as the same class, and no restart by Ray once it dies (the
registry supervises it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import ray
from ray.exceptions import RayActorError

from actors.names import actor_name
from actors.pipeline import launch
from actors.registry import get_or_create_registry
from dash_ray.errors import NotFoundError, SpecError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.channel import ChannelClient
from dash_ray.settings import ROLE_LABEL
from dash_ray.spec import parse_spec
from tests.actors.conftest import Made
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

FIELDS = {"time": {"path": "$.ts", "type": "timestamp"}, "temp_c": {"path": "$.temp", "type": "double"}}


def spec(pipeline_id: str, **storage: Any):
    return parse_spec({"id": pipeline_id, "mapping": {"fields": FIELDS}, "storage": storage,
                       "flush": {"records": 100_000, "seconds": 3600}})


def batch(count: int) -> RawBatch:
    payload = b"".join(orjson.dumps({"ts": "2026-01-01T00:00:00Z", "temp": 20 + i}) + b"\n" for i in range(count))
    return RawBatch(payload=payload, count=count, received_at_us=time.time_ns() // 1000)


def started(made: Made, home: Path, pipeline_id: str, **storage: Any) -> Any:
    actor = launch(spec(pipeline_id, **storage), made.settings(home).pipeline())
    made.names.add(actor_name(pipeline_id))
    return actor


def test_each_method_reaches_the_pipelines_core(made: Made, tmp_path: Path) -> None:
    pipeline_id = f"shell-{uuid.uuid4().hex[:6]}"
    actor = started(made, tmp_path / "home", pipeline_id, silver="lake")
    try:
        assert ray.get(actor.start.remote(), timeout=120)["state"] == "running"
        found = ray.get_actor(actor_name(pipeline_id), namespace=made.namespace)
        assert found._actor_id == actor._actor_id
        labels = ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_labels()))
        assert labels[ROLE_LABEL] in ("ingestor", "web-ingestor")
        [ack] = ray.get(actor.ingest.remote([batch(2)]), timeout=60)
        assert isinstance(ack, Ack) and (ack.first_seq, ack.last_seq) == (1, 2)
        endpoint = ray.get(actor.endpoint.remote(), timeout=60)

        async def over_the_channel() -> list[Ack | Exception]:
            client = ChannelClient(endpoint)
            try:
                return await client.call([batch(3)])
            finally:
                await client.close()
        [channel_ack] = asyncio.run(over_the_channel())
        assert isinstance(channel_ack, Ack) and (channel_ack.first_seq, channel_ack.last_seq) == (3, 5)
        assert [r["seq"] for r in ray.get(actor.records.remote(None, 10), timeout=60)] == [1, 2, 3, 4, 5]
        assert ray.get(actor.health.remote(), timeout=60)["counters"]["last_seq"] == 5
        where = ray.get(actor.live_read.remote(None, 0.0, 10), timeout=60)
        assert where.last_seq == 5
        assert [r["seq"] for r in ray.get(actor.live_read.remote(3, 0.0, 10), timeout=60).records] == [4, 5]
        assert ray.get(actor.flush.remote(), timeout=60) == 5
        job = ray.get(actor.replay.remote({"first_seq": 1, "last_seq": 2}), timeout=60)
        assert ray.get(actor.job.remote(job["id"]), timeout=60)["id"] == job["id"]
        assert ray.get(actor.replay_dead.remote(), timeout=60)["kind"] == "dead-replay"
        with pytest.raises(NotFoundError) as missing:  # the same class on this side
            ray.get(actor.job.remote(f"{pipeline_id}.999"), timeout=60)
        assert missing.value.cause.where == f"{pipeline_id}.999"
        ray.get(actor.stop.remote(), timeout=60)
        with pytest.raises(UnavailableError):
            ray.get(actor.endpoint.remote(), timeout=60)
    finally:
        ray.kill(actor, no_restart=True)


def test_a_start_refused_crosses_as_the_spec_error_and_ray_never_restarts_the_actor(
        made: Made, tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = get_or_create_registry(made.settings(home))  # no database: it says so when asked
    made.names.add("registry")
    ray.get(registry.ready.remote(60), timeout=120)
    actor = started(made, home, f"refused-{uuid.uuid4().hex[:6]}", silver="postgres")
    with pytest.raises(SpecError) as refused:
        ray.get(actor.start.remote(), timeout=120)
    assert [p.path for p in refused.value.cause.problems] == ["storage.silver"]
    # A pipeline actor that dies stays dead (max_restarts=0): the registry restarts pipelines.
    ray.kill(actor, no_restart=False)

    def dead() -> bool:
        # The kill reaches the actor asynchronously: a call made first may still be answered
        # (here with the not-started pipeline's UnavailableError); once dead, it stays dead.
        try:
            ray.get(actor.health.remote(), timeout=60)
        except RayActorError:
            return True
        except UnavailableError:
            return False
        return False

    wait_for(dead, timeout=30, what="the killed actor to be dead")
    time.sleep(1)  # long enough for Ray to have restarted it, had it been allowed to
    with pytest.raises(RayActorError):
        ray.get(actor.health.remote(), timeout=60)
