"""The web tier's typed client of a pipeline's actor (`serve_app.pipeline_client`, issue 23),
against a real pipeline actor on the running platform: each call answers with its dataclass
(Endpoint, Ack, LiveRead, Job), the pipeline's own errors come back as they were raised, and
an absent actor is a 503 to try again; the same for a pipeline in a shared host actor
(`placement: shared`), found through the registry."""

from __future__ import annotations

import time
import uuid

import pytest

from dash_ray.errors import NotFoundError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.channel import Endpoint
from dash_ray.lifecycle.jobstore import Job
from dash_ray.lifecycle.selection import ReplayRequest
from dash_ray.live.feed import LiveRead
from serve_app.pipeline_client import PipelineClient

pytestmark = pytest.mark.ray


@pytest.mark.parametrize("placement", ["dedicated", "shared"])
async def test_each_call_answers_with_its_dataclass(platform, placement: str) -> None:
    pipeline_id = f"client-{uuid.uuid4().hex[:6]}"
    spec = {"id": pipeline_id, "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}}, "placement": placement}
    platform.client.deploy(spec)
    client = PipelineClient(pipeline_id, platform.settings.namespace)
    try:
        assert isinstance(await client.endpoint(), Endpoint)
        [ack] = await client.ingest([RawBatch(b'{"n": 1}\n{"n": 2}\n', 2, time.time_ns() // 1000)])
        assert isinstance(ack, Ack) and (ack.first_seq, ack.last_seq) == (1, 2)
        assert [r["data"]["n"] for r in await client.records(None, 10)] == [1, 2]
        where = await client.live_read(None, wait_s=0.0, limit=10)
        assert isinstance(where, LiveRead) and where.last_seq == 2
        job = await client.replay(ReplayRequest(first_seq=1, last_seq=2))
        assert isinstance(job, Job) and job.id.startswith(f"{pipeline_id}.") and job.kind == "replay"
        assert job.asked == {"from_seq": 1, "to_seq": 2}
        again = await client.job(job.id)
        assert isinstance(again, Job) and again.id == job.id
        dead = await client.replay_dead()
        assert isinstance(dead, Job) and dead.kind == "dead-replay"
        with pytest.raises(NotFoundError):
            await client.job(f"{pipeline_id}.999")
    finally:
        await client.close()
    absent = PipelineClient(f"absent-{uuid.uuid4().hex[:6]}", platform.settings.namespace)
    with pytest.raises(UnavailableError, match="is not running"):
        await absent.records(None, 1)
