"""Two owners of one pipeline: an old pipeline actor is frozen (SIGSTOP) with records it
acknowledged and has not stored, a new owner (another process, sharing only the JetStream log,
the state folder and the lake) starts, stores them with its own and goes on; then the old one
is thawed (SIGCONT). It can neither acknowledge (its log is fenced) nor commit (the lake's
owner marker is not its own), and the lake holds every record once, in order."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import ray

from actors.names import actor_name
from actors.pipeline import launch
from dash_ray.errors import DashError, StorageError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.lake import Lake
from dash_ray.log.choice import drop_log, log_name
from dash_ray.pipeline.host import PipelineHost
from dash_ray.spec import parse_spec
from tests.actors.conftest import Made

pytestmark = pytest.mark.ray

NATS = "nats://127.0.0.1:4222"


def _batch(first: int, count: int) -> RawBatch:
    payload = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(first, first + count))
    return RawBatch(payload=payload, count=count, received_at_us=time.time_ns() // 1000)


async def _no_dsn() -> str | None:
    return None


def test_a_thawed_old_owner_can_neither_acknowledge_nor_commit(made: Made, tmp_path: Path) -> None:
    pipeline_id = f"fence-{uuid.uuid4().hex[:6]}"
    spec = parse_spec({"id": pipeline_id, "storage": {"silver": "lake"},
                       "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}},
                       "flush": {"records": 100_000, "seconds": 3600}})
    shared = tmp_path / "shared"
    settings = made.settings(tmp_path / "home", lake_url=str(shared / "lake"), log="jetstream", nats_url=NATS,
                             state_dir=str(shared / "state")).pipeline()
    made.names.add(actor_name(pipeline_id))
    old = launch(spec, settings)
    pid = 0
    try:
        assert ray.get(old.start.remote(), timeout=120)["state"] == "running"
        [ack] = ray.get(old.ingest.remote([_batch(0, 20)]), timeout=60)
        assert isinstance(ack, Ack) and ack.last_seq == 20
        pid = ray.get(old.__ray_call__.remote(lambda self: os.getpid()), timeout=60)
        os.kill(pid, signal.SIGSTOP)

        async def new_owner() -> list[Any]:
            host = PipelineHost(spec.to_json_dict(), settings, address="127.0.0.1")
            await host.start(_no_dsn)
            try:
                [mine] = await host.core.ingest([_batch(20, 10)])
                assert isinstance(mine, Ack) and (mine.first_seq, mine.last_seq) == (21, 30)
                assert await host.core.flush() == 30  # the old owner's 20, from the log, and its own 10
                os.kill(pid, signal.SIGCONT)
                late: list[Any] = []
                for call in (old.ingest.remote([_batch(100, 5)]), old.flush.remote()):
                    try:
                        late.append(await asyncio.wrap_future(call.future()))
                    except DashError as exc:
                        late.append(exc)
                [after] = await host.core.ingest([_batch(30, 5)])  # the new owner goes on
                assert isinstance(after, Ack) and after.last_seq == 35
                assert await host.core.flush() == 5
                return late
            finally:
                await host.stop()

        [ingest_answer], flush_answer = asyncio.run(new_owner())
        assert isinstance(ingest_answer, DashError), ingest_answer  # not acknowledged
        assert isinstance(flush_answer, StorageError) and "stores nothing more" in str(flush_answer)  # the lake marker
        silver = Lake.from_url(str(shared / "lake")).read("silver", pipeline_id)
        assert silver is not None
        assert silver.column("seq").to_pylist() == list(range(1, 36))
        assert silver.column("n").to_pylist() == list(range(35))
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        made.kill_all()
        drop_log("jetstream", folder=tmp_path / "none", name=log_name(made.namespace, pipeline_id), nats_url=NATS)
