"""Replay and dead letters on the running platform: records dead-lettered by a strict rule are
listed with their reasons; after the mapping is fixed (a redeploy), replaying the dead letters
moves them to silver; a full replay twice leaves one copy; job progress is readable; bad
requests are 400s, unknown jobs 404s, and a read token cannot start a replay."""

from __future__ import annotations

import uuid

import pytest

from dash_ray.errors import ForbiddenError, MalformedBodyError, NotFoundError

pytestmark = pytest.mark.ray

BASE = 1_777_636_800


def spec(pipeline_id: str, limit: float) -> dict:
    return {"id": pipeline_id,
            "mapping": {"fields": {"time": {"path": "$.ts", "type": "timestamp", "unit": "s"},
                                   "temp_c": {"path": "$.temp", "type": "double"}},
                        "validate": [{"field": "temp_c", "max": limit}]},
            "flush": {"records": 1000, "seconds": 0.2}}


def test_dead_letters_are_listed_and_replay_after_the_mapping_is_fixed(platform) -> None:
    pipeline_id = f"replay-{uuid.uuid4().hex[:6]}"
    secret = platform.client.deploy(spec(pipeline_id, 30)).ingest_secret
    readings = [{"ts": BASE + i, "temp": 20 + i} for i in range(20)]
    platform.client.ingest(pipeline_id, readings, secret=secret)
    dead = platform.wait_for(lambda: len(d := platform.client.dead(pipeline_id)) == 9 and d,
                             what="the dead letters to be stored")
    assert [d["seq"] for d in dead] == list(range(20, 11, -1))  # newest first
    assert dead[0]["rule"] == "max" and dead[0]["field"] == "temp_c" and dead[0]["record"] == readings[-1]
    assert len(platform.client.query(pipeline_id)) == 11

    platform.client.deploy(spec(pipeline_id, 100))  # the fix: a new version of the mapping
    job = platform.client.replay_dead(pipeline_id)
    assert job["job"].startswith(f"{pipeline_id}.") and job["state"] == "running"
    done = platform.client.wait_job(job["job"], timeout=60)
    assert done["state"] == "done" and done["done"] == done["total"] == 20
    assert done["job"] == done["id"] == job["id"]  # GET /v1/jobs/{id}: the job as POST answered it
    assert done["matched"] == 9 and done["replayed"] == 20 and done["kept"] == 0 and done["asked"] == {}
    assert platform.client.dead(pipeline_id) == []
    rows = platform.client.query(pipeline_id)
    assert [r["seq"] for r in rows] == list(range(1, 21)) and rows[-1]["temp_c"] == 39.0

    for _ in range(2):
        again = platform.client.wait_job(platform.client.replay(pipeline_id)["job"], timeout=60)
        assert again["state"] == "done"
    assert platform.client.query(pipeline_id, agg="count") == [{"count": 20}]
    # `start`/`end` are the event time, as in query: readings 5..7 (seqs 6..8) of 20.
    by_time = platform.client.wait_job(platform.client.replay(pipeline_id, start=BASE + 5, end=BASE + 8)["job"],
                                       timeout=60)
    assert by_time["state"] == "done" and by_time["matched"] == 3 and by_time["total"] == 20
    assert by_time["asked"] == {"from": "2026-05-01T12:00:05Z", "to": "2026-05-01T12:00:08Z"}
    # By receive time: everything arrived in the last hour, nothing in 2026 (yet).
    received = platform.client.wait_job(platform.client.replay(
        pipeline_id, received_start="2026-05-01", received_end="2026-05-02")["job"], timeout=60)
    assert received["matched"] == 0 and received["total"] == 0


def test_replay_requests_are_checked(platform) -> None:
    pipeline_id = f"replay-{uuid.uuid4().hex[:6]}"
    platform.client.deploy(spec(pipeline_id, 30))
    with platform.http() as http:
        bad = http.post(f"/v1/pipelines/{pipeline_id}/replay", json={"from": "soon"})
        assert bad.status_code == 400 and bad.json()["error"]["where"] == "from"
        assert http.post(f"/v1/pipelines/{pipeline_id}/replay", json={"from_seq": -1}).status_code == 400
        backwards = http.post(f"/v1/pipelines/{pipeline_id}/replay", json={"from_seq": 10, "to_seq": 5})
        assert backwards.status_code == 400 and backwards.json()["error"]["where"] == "from_seq"
        mixed = http.post(f"/v1/pipelines/{pipeline_id}/replay", json={"from": "2026-05-01", "received_to": 0})
        assert mixed.status_code == 400 and mixed.json()["error"]["where"] == "received_from"
        late = http.post(f"/v1/pipelines/{pipeline_id}/replay", json={"received_from": "soon"})
        assert late.status_code == 400 and late.json()["error"]["where"] == "received_from"
        assert http.post(f"/v1/pipelines/{pipeline_id}/replay", json={"nope": 1}).status_code == 400
        assert http.post(f"/v1/pipelines/{pipeline_id}/replay", content=b"{").status_code == 400
        assert http.post("/v1/pipelines/no-such/replay", json={}).status_code == 404
        assert http.get(f"/v1/pipelines/{pipeline_id}/dead", params={"limit": "0"}).status_code == 400
        assert http.get("/v1/jobs/not-a-job").status_code == 404
    with pytest.raises(NotFoundError):
        platform.client.job(f"{pipeline_id}.999")
    with pytest.raises(MalformedBodyError):
        platform.client.replay(pipeline_id, from_seq=0)
    read = platform.client.create_token("read", name="replay-reader")
    with platform.http(token=read["token"]) as http:
        assert http.post(f"/v1/pipelines/{pipeline_id}/replay", json={}).status_code == 403
        assert http.get(f"/v1/pipelines/{pipeline_id}/dead").json() == {"dead": []}
    from dash_ray.client import Client

    with Client(platform.url, token=read["token"]) as reader, pytest.raises(ForbiddenError):
        reader.replay_dead(pipeline_id)
