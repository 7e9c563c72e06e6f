"""A polling pipeline on the platform (Ray, the registry, the web tier): its `source_state`
reaches `GET /v1/pipelines/{id}`, the SDK and `dash-ray status ID`; and a SIGKILL of the
pipeline actor's process in the middle of a poll (after a page was acknowledged, while the
next one is being fetched) leaves each API record in the lake exactly once: nothing fetched
twice into the lake, nothing skipped."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest
import ray

from dash_ray.lake import Lake
from tests.conftest import dash
from tests.polled_api import PolledApi, serving

pytestmark = [pytest.mark.ray]


def stored_ids(lake_url: str, pipeline_id: str) -> list[int]:
    dataset = Lake.from_url(lake_url).dataset("silver", pipeline_id)
    if dataset is None:
        return []
    return [row[0] for row in duckdb.sql("SELECT id FROM dataset ORDER BY id").fetchall()]


def sigkill_actor(platform: Any, pipeline_id: str) -> int:
    actor = ray.get_actor(f"pipeline:{pipeline_id}", namespace=platform.settings.namespace)
    pid = int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))
    assert b"PipelineActor" in Path(f"/proc/{pid}/cmdline").read_bytes()
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_sigkill_mid_poll_leaves_each_api_record_in_the_lake_once(platform: Any) -> None:
    pipeline_id = f"polled-{uuid.uuid4().hex[:6]}"
    api = PolledApi(items=10)
    api.gate = threading.Event()  # pages after the first hang until it is set
    with serving(api):
        platform.client.deploy({
            "id": pipeline_id,
            "source": {"kind": "http_poll", "url": api.url + "/cursor", "interval": 0.5, "jitter": 0.2,
                       "backoff_initial": 0.1, "backoff_max": 1, "records": "$.data", "primary_key": "$.id",
                       "pagination": {"kind": "cursor", "cursor_path": "$.meta.next", "cursor_param": "cursor"},
                       "incremental": {"cursor_path": "$.updated_at", "start_param": "since"}},
            "mapping": {"fields": {"id": {"path": "$.id", "type": "int", "required": True},
                                   "value": {"path": "$.value", "type": "string"}}},
            "flush": {"records": 1000, "seconds": 0.3},
        })
        # The first page is acknowledged; the poll waits for the second.
        state = platform.wait_for(lambda: (p := platform.client.get(pipeline_id)).source_state
                                  and p.source_state["records"] == 3 and p.source_state, timeout=120,
                                  what="the first page acknowledged")
        assert state["cursor"] is None and state["next_poll_at"] is None and state["last_poll_at"]
        with platform.http() as http:
            body = http.get(f"/v1/pipelines/{pipeline_id}").json()
        assert body["source_state"]["records"] == 3 and body["source_state"]["polls"] == 1
        shown = dash(Path(platform.settings.home), platform.settings.port, "status", pipeline_id,
                     DASH_URL=platform.url, DASH_TOKEN=platform.token)
        assert shown.returncode == 0, shown.stderr
        assert "last poll:" in shown.stdout and "next poll:" in shown.stdout and "records 3" in shown.stdout

        sigkill_actor(platform, pipeline_id)
        api.gate.set()
        state = platform.wait_for(
            lambda: (p := platform.client.get(pipeline_id)).restarts == 1 and p.status == "running"
            and (p.source_state or {}).get("cursor") == 100 and p.source_state, timeout=120,
            what="the restarted pipeline's complete poll")
        assert state["skipped"] >= 3  # the first page, fetched again after the kill, not stored again
        api.add(2)
        platform.wait_for(lambda: (platform.client.get(pipeline_id).source_state or {}).get("cursor") == 120,
                          timeout=60, what="the new records")
        ids = platform.wait_for(lambda: (ids := stored_ids(platform.settings.lake_url, pipeline_id))
                                and len(ids) >= 12 and ids, timeout=60, what="the records in the lake")
        assert ids == list(range(1, 13)), "an API record is missing or stored twice"
    platform.client.delete(pipeline_id)
