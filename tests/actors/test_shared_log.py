"""A pipeline actor whose write-ahead log is a NATS JetStream stream (DASH_LOG=jetstream, the
server at 127.0.0.1:4222): records acknowledged by one actor, which is then killed before it
stored anything, are recovered by a new actor that shares no folder with it (another node), and
stored exactly once; a retried idempotency key still gets its first ack."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import ray

from actors.names import actor_name
from actors.pipeline import launch
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.lake import Lake
from dash_ray.log.choice import drop_log, log_name
from dash_ray.settings import PipelineSettings
from dash_ray.spec import parse_spec
from tests.actors.conftest import Made
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

NATS = "nats://127.0.0.1:4222"


def _spec(pipeline_id: str) -> Any:
    return parse_spec({"id": pipeline_id, "storage": {"silver": "lake"},
                       "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}},
                       "flush": {"records": 100_000, "seconds": 3600}})


def _batch(first: int, count: int, key: str) -> RawBatch:
    payload = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(first, first + count))
    return RawBatch(payload=payload, count=count, received_at_us=time.time_ns() // 1000, idempotency_key=key)


def _node_settings(made: Made, root: Path, lake: Path) -> PipelineSettings:
    """A node of its own: its own home and state folder; only the lake and NATS are shared."""
    settings = made.settings(root / "home", lake_url=str(lake), log="jetstream", nats_url=NATS,
                             state_dir=str(root / "state")).pipeline()
    assert settings.log == "jetstream" and settings.wal_root == str(root / "state")
    return settings


def _dead(actor: Any) -> bool:
    try:
        ray.get(actor.health.remote(), timeout=5)
    except ray.exceptions.RayActorError:
        return True
    return False


def test_a_pipeline_on_the_jetstream_log_loses_and_doubles_nothing_across_a_kill(made: Made, tmp_path: Path) -> None:
    pipeline_id = f"js-{uuid.uuid4().hex[:6]}"
    spec, lake = _spec(pipeline_id), tmp_path / "lake"
    first_node = _node_settings(made, tmp_path / "a", lake)
    made.names.add(actor_name(pipeline_id))
    try:
        actor = launch(spec, first_node)
        assert ray.get(actor.start.remote(), timeout=120)["state"] == "running"
        acks = [ray.get(actor.ingest.remote([_batch(10 * i, 10, f"k{i}")]), timeout=60)[0] for i in range(5)]
        assert [(a.first_seq, a.last_seq) for a in acks] == [(10 * i + 1, 10 * i + 10) for i in range(5)]
        ray.kill(actor, no_restart=True)  # no flush, no clean close: the 50 records are only in the log
        wait_for(lambda: _dead(actor), timeout=30, what="the killed actor to be dead")
        assert Lake.from_url(str(lake)).last_seq("bronze", pipeline_id) == 0

        actor = launch(spec, _node_settings(made, tmp_path / "b", lake))  # no folder of the first node
        health = ray.get(actor.start.remote(), timeout=120)
        assert health["state"] == "running"
        [again] = ray.get(actor.ingest.remote([_batch(20, 10, "k2")]), timeout=60)  # a retry: its first ack
        assert isinstance(again, Ack) and (again.first_seq, again.last_seq) == (21, 30)
        [new] = ray.get(actor.ingest.remote([_batch(50, 5, "k5")]), timeout=60)
        assert isinstance(new, Ack) and (new.first_seq, new.last_seq) == (51, 55)  # numbering goes on
        assert ray.get(actor.flush.remote(), timeout=60) == 55
        bronze = Lake.from_url(str(lake)).read("silver", pipeline_id)
        assert bronze is not None
        assert bronze.column("seq").to_pylist() == list(range(1, 56))
        assert bronze.column("n").to_pylist() == list(range(55))
        ray.get(actor.stop.remote(), timeout=60)
    finally:
        made.kill_all()
        drop_log("jetstream", folder=tmp_path / "none", name=log_name(made.namespace, pipeline_id), nats_url=NATS)


def test_the_settings_choose_the_log_and_refuse_what_cannot_work(tmp_path: Path) -> None:
    from dash_ray.settings import Settings

    env = {"DASH_HOME": str(tmp_path), "DASH_LOG": "JetStream", "DASH_NATS_URL": "nats://a:4222,nats://b:4222",
           "DASH_NATS_REPLICAS": "3", "DASH_STATE_DIR": str(tmp_path / "shared")}
    settings = Settings.from_env(env)
    part = settings.pipeline()
    assert (part.log, part.nats_url, part.nats_replicas) == ("jetstream", "nats://a:4222,nats://b:4222", 3)
    assert part.wal_dir("p") == tmp_path / "shared" / "p"
    assert dataclasses.replace(settings, state_dir=None).pipeline().wal_root == str(tmp_path / "wal")
    with pytest.raises(ValueError, match="DASH_LOG must be one of file, jetstream, postgres, not 'kafka'"):
        Settings.from_env({**env, "DASH_LOG": "kafka"})
    with pytest.raises(ValueError, match="DASH_LOG=postgres .* set DASH_PG_DSN"):
        Settings.from_env({**env, "DASH_LOG": "postgres"})
    with pytest.raises(ValueError, match="DASH_STATE_DIR must be an absolute folder"):
        Settings.from_env({**env, "DASH_STATE_DIR": "relative/state"})
