"""Sinks on a running platform: a webhook receiver on loopback (a thread of the test) that
fails at first; the pipeline actor's process SIGKILLed while it delivers; after the
supervisor restarts it, every selected record is delivered, and a record delivered twice is
so only under the same `webhook-id`. The routes, the SDK, the CLI's table and `/metrics`
show the sink."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import ray

from dash_ray.ingest.signing import StandardScheme
from tests.conftest import dash
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Hook:
    """A webhook receiver: the first `fail` requests get 500, the rest 200; keeps what came."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.got: list[tuple[dict[str, str], bytes, int]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if len(hook.got) < hook.fail else 200
                hook.got.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b, status in self.got if status == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hook() -> Iterator[Hook]:
    receiver = Hook(fail=3)
    try:
        yield receiver
    finally:
        receiver.close()


def test_a_sigkill_while_delivering_loses_no_delivery_and_repeats_only_the_same_ids(platform, hook,
                                                                                    tmp_path: Path) -> None:
    client = platform.client
    client.put_secret("sink-test-key", SECRET)
    pipeline_id = f"sinks-{uuid.uuid4().hex[:6]}"
    created = client.deploy({
        "id": pipeline_id, "flush": {"records": 200, "seconds": 0.3},
        "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}},
        "sinks": [{"name": "hook", "kind": "webhook", "url": hook.url, "when": "n % 2 = 0",
                   "secret": {"secret": "sink-test-key"}, "batch": {"max_records": 20, "max_wait": 0.05},
                   "retry": {"schedule": [0.2] * 10, "jitter": 0.1}}]})
    total = 1000
    for start in range(0, total, 100):
        client.ingest(pipeline_id, [{"n": n} for n in range(start, start + 100)], secret=created.ingest_secret)
    wait_for(lambda: len(hook.delivered()) >= 3, timeout=60, what="deliveries under way")
    actor = ray.get_actor(f"pipeline:{pipeline_id}", namespace=platform.settings.namespace)
    pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    os.kill(pid, signal.SIGKILL)
    expected = list(range(0, total, 2))

    def delivered_numbers() -> list[int]:
        return sorted({r["data"]["n"] for _, body in hook.delivered() for r in orjson.loads(body)["records"]})

    wait_for(lambda: delivered_numbers() == expected, timeout=120, what="every even record delivered")
    ids_of: dict[int, set[str]] = defaultdict(set)
    for headers, body, _ in hook.got:
        StandardScheme().verify(headers, body, [SECRET])
        for record in orjson.loads(body)["records"]:
            ids_of[record["seq"]].add(headers["webhook-id"])
    assert all(len(ids) == 1 for ids in ids_of.values()), "a record went out under two ids"
    wait_for(lambda: client.get(pipeline_id).restarts >= 1, timeout=60, what="the restart counted")

    # n = 998, the last even one, is seq 999: its answer counted (the sink process tells its
    # state a moment after the receiver has the POST).
    [sink] = wait_for(lambda: (s := client.sinks(pipeline_id)) and s[0]["cursor"] >= total
                      and s[0]["last_delivered_seq"] == total - 1 and s, timeout=60, what="the sink's state")
    assert sink["name"] == "hook" and sink["state"] == "running" and sink["dead"] == 0
    with platform.http() as http:
        metrics = wait_for(lambda: (t := http.get("/metrics").text) and
                           f'dash_sink_deliveries_total{{pipeline="{pipeline_id}",result="delivered",sink="hook"}}'
                           in t and t, timeout=30, what="the sink in /metrics")
        assert "dash_sink_deliveries_total" in metrics
        assert http.post(f"/v1/pipelines/{pipeline_id}/sinks/nope/redeliver").status_code == 404
    assert client.redeliver(pipeline_id, "hook") == 0
    cli = {"DASH_URL": platform.url, "DASH_TOKEN": platform.token}
    shown = dash(tmp_path / ".dash", platform.settings.port, "sinks", pipeline_id, **cli)
    assert shown.returncode == 0, shown.stderr
    header, line = shown.stdout.splitlines()[:2]
    assert header.split()[:4] == ["name", "kind", "state", "breaker"] and line.split()[:4] == [
        "hook", "webhook", "running", "closed"]
    again = dash(tmp_path / ".dash", platform.settings.port, "sinks", pipeline_id, "--redeliver", "hook", **cli)
    assert again.stdout.strip() == "sink hook: 0 dead deliveries queued again"
    client.delete(pipeline_id, purge=True)
