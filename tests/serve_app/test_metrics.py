"""`GET /metrics` on the running platform: what was sent, accepted, dead-lettered and filtered
is what Prometheus reads, ingest requests are counted by status with their latency, the
route needs a read or admin token; and a bug in a route answers 500 with a request id that is
also on its log line, with the traceback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dash_ray.deploy.localray import read_run_file
from dash_ray.ingest.signing import signature_header
from tests.conftest import ADMIN_TOKEN, Running, dash, free_port
from tests.waiting import until, wait_for

pytestmark = pytest.mark.ray

SPEC_MAPPING = {"fields": {"n": {"path": "$.n", "type": "int"}},
                "filter": "n <> 50",
                "validate": [{"field": "n", "min": 0, "max": 100}]}


def scrape(platform, token: str | None = None) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape: (sample name, its labels) -> value."""
    with platform.http(token) as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum over every series of `name` with these labels (e.g. over replicas)."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert found, f"no sample {name} {labels}"
    return sum(found)


def post_events(platform, pipeline_id: str, body: bytes, secret: str, **headers: str) -> Any:
    with platform.http() as http:
        return http.post(f"/v1/pipelines/{pipeline_id}/events", content=body,
                         headers={"content-type": "application/x-ndjson",
                                  "dash-signature": signature_header(secret, body), **headers})


def test_metrics_count_what_was_sent_accepted_dead_lettered_and_filtered(platform) -> None:
    pipeline_id = f"metrics-{uuid.uuid4().hex[:6]}"
    secret = platform.client.deploy({"id": pipeline_id, "mapping": SPEC_MAPPING}).ingest_secret
    good = [{"n": i} for i in range(10)]                   # 10 stored in silver
    out_of_range = [{"n": -1}, {"n": 500}, {"n": 101}]     # 3 dead-lettered by `validate`
    filtered = [{"n": 50}, {"n": 50}]                      # 2 dropped by the filter
    records = good + out_of_range + filtered
    body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    first = post_events(platform, pipeline_id, body, secret, **{"idempotency-key": "batch-1"})
    assert first.status_code == 202 and first.json()["accepted"] == 15
    again = post_events(platform, pipeline_id, body, secret, **{"idempotency-key": "batch-1"})
    assert again.status_code == 202 and again.json()["duplicate"] is True
    single = platform.client.ingest(pipeline_id, {"n": 7}, secret=secret)
    assert single.accepted == 1
    forged = post_events(platform, pipeline_id, body, "whsec_not-the-secret")
    assert forged.status_code == 401
    with platform.http() as http:
        unknown = http.post("/v1/pipelines/no-such-pipeline-here/events", content=b"{}")
    assert unknown.status_code == 404

    def counted() -> dict | None:
        samples = scrape(platform)
        done = value(samples, "dash_records_mapped_total", pipeline=pipeline_id) == 11
        return samples if done and value(samples, "dash_records_dead_total", pipeline=pipeline_id) == 3 else None

    samples = platform.wait_for(counted, timeout=30, what="the pipeline's counters in /metrics")
    p = {"pipeline": pipeline_id}
    # The duplicate request's records arrived (received) and were not stored again.
    assert value(samples, "dash_records_received_total", **p) == 15 + 15 + 1
    assert value(samples, "dash_records_accepted_total", **p) == 16
    assert value(samples, "dash_records_duplicate_total", **p) == 1
    assert value(samples, "dash_records_dead_total", **p) == 3
    assert value(samples, "dash_records_filtered_total", **p) == 2
    assert value(samples, "dash_pipeline_restarts_total", **p) == 0
    assert value(samples, "dash_pipeline_status", status="running", **p) == 1
    assert value(samples, "dash_pipeline_status", status="failed", **p) == 0
    # Requests as the replica answered them: three 202 (one a duplicate), one 401.
    assert value(samples, "dash_ingest_requests_total", code="202", **p) == 3
    assert value(samples, "dash_ingest_requests_total", code="401", **p) == 1
    assert value(samples, "dash_ingest_latency_seconds_count", **p) == 4
    assert value(samples, "dash_ingest_latency_seconds_bucket", le="+Inf", **p) == 4
    assert 0 < value(samples, "dash_ingest_latency_seconds_sum", **p) < 60
    # A made-up pipeline id gets no series of its own.
    assert value(samples, "dash_ingest_requests_total", pipeline="_unknown", code="404") >= 1
    assert not [k for k in samples if ("pipeline", "no-such-pipeline-here") in k[1]]
    assert value(samples, "dash_registry_up") == 1
    # Storing happens on the pipeline's own schedule: once it has, pending is 0 and the flush counted.

    def stored() -> dict | None:
        s = scrape(platform)
        return s if value(s, "dash_flush_seconds_count", **p) >= 1 and value(
            s, "dash_wal_pending_records", **p) == 0 else None

    samples = platform.wait_for(stored, timeout=30, what="a flush in /metrics")
    assert value(samples, "dash_flush_seconds_sum", **p) > 0
    assert not [k for k in samples if k[0] == "dash_sink_deliveries_total" and ("pipeline", pipeline_id) in k[1]]
    platform.client.delete(pipeline_id)


def test_metrics_need_a_read_or_admin_token(platform) -> None:
    with platform.http() as http:
        anonymous = http.get("/metrics", headers={"authorization": ""})
        wrong = http.get("/metrics", headers={"authorization": "Bearer not-a-token"})
        made = http.post("/v1/tokens", json={"scope": "read", "name": "prometheus"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "AuthError"
    assert wrong.status_code == 401
    assert anonymous.json()["error"]["request_id"] == anonymous.headers["x-request-id"]
    assert made.status_code == 201
    samples = scrape(platform, made.json()["token"])
    assert value(samples, "dash_registry_up") == 1


def test_a_scrape_adds_the_other_replicas_reports_kept_by_the_registry(platform) -> None:
    """What another replica pushed (through the real registry actor) is in the answer of the
    one that is scraped, under its own `replica` label."""
    from serve_app.gateway import Gateway
    from serve_app.metrics import ReplicaMetrics
    from serve_app.registry_client import RegistryClient

    far_away = f"far-away-{uuid.uuid4().hex[:6]}"  # a scrape shows series of listed pipelines only
    platform.client.deploy({"id": far_away})
    elsewhere = ReplicaMetrics(Gateway(platform.settings.web()), replica=f"elsewhere:{uuid.uuid4().hex[:6]}")
    for _ in range(5):
        elsewhere.observe(far_away, 202, 0.002)
    elsewhere.live_clients(far_away).inc(2)
    with platform.http() as http:  # and one request the scraped replica counts itself
        assert http.post("/v1/pipelines/not-here-either/events", content=b"{}").status_code == 404
    asyncio.run(RegistryClient(platform.settings.namespace).report_web(elsewhere.replica, elsewhere.report()))

    def shown() -> dict | None:
        s = scrape(platform)
        hit = [k for k in s if ("replica", elsewhere.replica) in k[1]]
        return s if hit else None

    samples = platform.wait_for(shown, timeout=10, what="the other replica's series")
    other = {"pipeline": far_away, "replica": elsewhere.replica}
    assert value(samples, "dash_ingest_requests_total", code="202", **other) == 5
    assert value(samples, "dash_ingest_latency_seconds_bucket", le="0.0025", **other) == 5
    assert value(samples, "dash_live_clients", **other) == 2
    # The scraped replica's own series are there too, under another replica label.
    replicas = {dict(ls)["replica"] for (n, ls) in samples if n == "dash_ingest_requests_total"}
    assert len(replicas) >= 2


def _log_lines_with(temp_dir: str, needle: str) -> list[str]:
    """Every log line under the Ray instance's folder that holds `needle`, with the lines
    after it up to the next line that starts with a time stamp (a text traceback)."""
    found = []
    for path in (Path(temp_dir) / "session_latest" / "logs").rglob("*"):
        if not path.is_file() or not path.name.endswith((".err", ".out", ".log")):
            continue
        lines = path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if needle in line:
                follow = [line]
                for after in lines[i + 1:]:
                    if after[:4].isdigit():
                        break
                    follow.append(after)
                found.append("\n".join(follow))
    return found


def test_a_bug_in_a_route_answers_500_with_the_request_id_of_its_log_line(platform) -> None:
    """The fault is real: a file in the pipeline's silver area whose name matches the lake's
    pattern but whose date does not exist makes listing the area raise ValueError inside the
    query route."""
    pipeline_id = f"bug-{uuid.uuid4().hex[:6]}"
    platform.client.deploy({"id": pipeline_id, "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}}})
    bad = Path(platform.settings.lake_url) / "silver" / pipeline_id / "date=2026-13-45"
    bad.mkdir(parents=True)
    (bad / f"{1:020d}-{2:020d}.parquet").write_bytes(b"not parquet either")
    request_id = f"test-{uuid.uuid4().hex}"
    try:
        with platform.http() as http:
            answer = http.get(f"/v1/pipelines/{pipeline_id}/query", headers={"x-request-id": request_id})
            fresh = http.get(f"/v1/pipelines/{pipeline_id}/query")
    finally:
        for f in bad.iterdir():
            f.unlink()
        bad.rmdir()
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error == {"type": "InternalError", "message": "internal error: ValueError", "request_id": request_id}
    assert answer.headers["x-request-id"] == request_id
    # Without one, the server makes an id, and says it in the body and the header alike.
    assert fresh.status_code == 500
    assert fresh.json()["error"]["request_id"] == fresh.headers["x-request-id"] != request_id

    temp_dir = read_run_file(platform.settings.home).temp_dir
    logged = wait_for(lambda: _log_lines_with(temp_dir, request_id), timeout=20, every=0.5,
                      what=f"the log line of request {request_id}")
    assert len(logged) == 1, logged
    [line] = logged
    assert f"[pipeline={pipeline_id} request={request_id}]" in line
    assert f"unhandled error on GET /v1/pipelines/{pipeline_id}/query" in line
    assert "Traceback (most recent call last):" in line and "ValueError" in line
    assert "fromisoformat" in line  # the traceback reaches the real fault
    platform.client.delete(pipeline_id)


def _pipeline_actors(temp_dir: str) -> list[int]:
    """The pids of this Ray instance's pipeline actors (their workers hold its log files open)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or not (entry / "cmdline").read_bytes().startswith(b"ray::PipelineActor"):
                continue
            if any(os.readlink(fd).startswith(temp_dir) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _json_lines(temp_dir: str) -> list[dict]:
    lines = []
    for path in (Path(temp_dir) / "session_latest" / "logs").glob("worker-*.err"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(orjson.loads(line))
    return lines


def test_with_dash_log_format_json_the_web_tier_registry_and_pipelines_log_json(tmp_path: Path) -> None:
    """A platform started as a user does, with DASH_LOG_FORMAT=json: the replica's 500, the
    registry's boot and a pipeline actor's replay after a SIGKILL are JSON lines, each with
    what it is about; no line of Dash's is left in the text format."""
    home, port = tmp_path / ".dash", free_port()
    up = dash(home, port, "up", DASH_LOG_FORMAT="json", DASH_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        temp_dir = read_run_file(home).temp_dir
        auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60) as http:
            spec = {"mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}},
                    "flush": {"records": 1_000_000, "seconds": 3600}}
            created = http.put("/v1/pipelines/logged", json=spec)
            assert created.status_code == 201, created.text
            secret = created.json()["ingest_secret"]
            body = b'{"n": 1}\n{"n": 2}\n'
            sent = http.post("/v1/pipelines/logged/events", content=body,
                             headers={"content-type": "application/x-ndjson",
                                      "dash-signature": signature_header(secret, body)})
            assert sent.status_code == 202
            [actor] = _pipeline_actors(temp_dir)
            os.kill(actor, signal.SIGKILL)  # the records stay in its log

            bad = home / "lake" / "silver" / "logged" / "date=2026-02-30"
            bad.mkdir(parents=True)
            (bad / f"{1:020d}-{2:020d}.parquet").write_bytes(b"x")
            request_id = f"json-{uuid.uuid4().hex}"
            answer = http.get("/v1/pipelines/logged/query", headers={"x-request-id": request_id})
            assert answer.status_code == 500 and answer.json()["error"]["request_id"] == request_id
            for f in bad.iterdir():
                f.unlink()
            bad.rmdir()

            def logged() -> tuple | None:
                lines = _json_lines(temp_dir)
                error = [x for x in lines if x.get("request_id") == request_id]
                booted = [x for x in lines if x["message"].startswith("supervisor: booted")]
                replayed = [x for x in lines if x.get("pipeline") == "logged" and "in the log" in x["message"]]
                return (error, booted, replayed) if error and booted and replayed else None

            error, booted, replayed = Running(None, "", "", None).wait_for(
                logged, timeout=60, what="JSON lines of the replica, the registry and the pipeline")
        [line] = error
        assert (line["level"], line["logger"], line["pipeline"]) == ("ERROR", "serve_app.responses", "logged")
        assert "ValueError" in line["traceback"] and line["time"].endswith("Z")
        assert booted[0]["logger"] == "dash_ray.supervision.supervisor" and booted[0]["level"] == "INFO"
        assert replayed[0]["message"] == "pipeline logged: 2 record(s) in the log, mapping them in the background"
        text = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z [A-Z]+ (dash_ray|serve_app|actors)\.")
        for path in (Path(temp_dir) / "session_latest" / "logs").glob("worker-*.err"):
            assert not [x for x in path.read_text(errors="replace").splitlines() if text.match(x)], path
    finally:
        down = dash(home, port, "down")
    assert down.returncode == 0, down.stdout + down.stderr


# -- the counting of one replica, without Ray ---------------------------------------------------


class _Remote:
    def __init__(self, call: Any) -> None:
        self.remote = call


class _Registry:
    """Stands in for the registry actor's handle: keeps the replicas' reports as it does."""

    def __init__(self) -> None:
        self.reports: dict[str, dict] = {}
        self.report_web = _Remote(self._report)
        self.web_reports = _Remote(self._reports)
        self.pipelines = _Remote(self._pipelines)
        self.ids = ["weather", "p1", "p2", "p3", "p4", "p5"]

    async def _report(self, replica: str, report: dict) -> None:
        self.reports[replica] = report

    async def _reports(self) -> dict[str, dict]:
        return dict(self.reports)

    async def _pipelines(self) -> list:
        from dash_ray.spec import parse_spec
        from dash_ray.supervision.view import PipelineView

        return [PipelineView(i, "running", 0, None, 1, parse_spec({"id": i})) for i in self.ids]


def _replica(registry: _Registry, name: str, **options: Any) -> Any:
    from dash_ray.settings import Settings
    from serve_app.gateway import Gateway
    from serve_app.metrics import ReplicaMetrics
    from serve_app.registry_client import RegistryClient

    settings = Settings.from_env(env={}, home="/tmp/dash-metrics-unit").web()
    gateway = Gateway(settings, registry=RegistryClient(settings.namespace, handle=registry))
    return ReplicaMetrics(gateway, replica=name, cache_s=0.0, **options)


def _parse(text: bytes) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


async def test_each_replica_reports_its_own_series_and_a_scrape_shows_them_all() -> None:
    registry = _Registry()
    a, b = _replica(registry, "a", push_every_s=0.05), _replica(registry, "b", push_every_s=0.05)
    for seconds in (0.0004, 0.003, 0.2, 30.0):
        a.observe("weather", 202, seconds)
    b.observe("weather", 429, 0.001)
    b.live_clients("weather").inc(3)
    b.live_clients("weather").dec()
    await until(lambda: "b" in registry.reports, what="replica b's first report")
    samples = _parse(await a.scrape())
    a.close(), b.close()
    assert value(samples, "dash_ingest_requests_total", pipeline="weather", code="202", replica="a") == 4
    assert value(samples, "dash_ingest_requests_total", pipeline="weather", code="429", replica="b") == 1
    assert value(samples, "dash_live_clients", pipeline="weather", replica="b") == 2
    buckets = {dict(ls)["le"]: v for (n, ls), v in samples.items()
               if n == "dash_ingest_latency_seconds_bucket" and ("replica", "a") in ls}
    assert (buckets["0.001"], buckets["0.005"], buckets["0.25"], buckets["10.0"], buckets["+Inf"]) == (1, 2, 3, 3, 4)
    assert value(samples, "dash_ingest_latency_seconds_sum", replica="a") == pytest.approx(30.2034)
    assert value(samples, "dash_registry_up") == 1


async def test_made_up_pipeline_ids_cannot_grow_the_series() -> None:
    metrics = _replica(_Registry(), "a", max_pipelines=3)
    for i in range(50):
        metrics.observe(f"made-up-{i}", 404, 0.001)
    for name in ("p1", "p2", "p3", "p4", "p5"):
        metrics.observe(name, 202, 0.001)
    metrics.observe("p1", 404, 0.001)  # a pipeline answered before keeps its label
    samples = _parse(await metrics.scrape())
    metrics.close()
    pipelines = {dict(ls)["pipeline"] for (n, ls) in samples if n == "dash_ingest_requests_total"}
    assert pipelines == {"_unknown", "p1", "p2", "_other"}
    assert value(samples, "dash_ingest_requests_total", pipeline="_unknown") == 50
    assert value(samples, "dash_ingest_requests_total", pipeline="_other") == 3
    assert value(samples, "dash_ingest_requests_total", pipeline="p1", code="404") == 1


async def test_a_scrape_without_the_registry_still_shows_the_replica() -> None:
    registry = _Registry()

    async def down() -> list:
        raise RuntimeError("registry gone")

    registry.pipelines = _Remote(down)
    metrics = _replica(registry, "a")
    metrics.observe("weather", 202, 0.01)
    samples = _parse(await metrics.scrape())
    metrics.close()
    assert value(samples, "dash_registry_up") == 0
    assert value(samples, "dash_ingest_requests_total", pipeline="weather", replica="a") == 1


async def test_a_deleted_pipeline_s_series_leave_the_scrape() -> None:
    """(issue 21, item 20) Once the registry no longer lists a pipeline, neither this replica's
    series of it nor other replicas' reported ones are shown, and this replica forgets them."""
    registry = _Registry()
    metrics = _replica(registry, "a")
    for pipeline_id in ("weather", "gone"):
        metrics.observe(pipeline_id, 202, 0.01)
    metrics.live_clients("gone").inc()
    registry.reports["b"] = {"requests": {("gone", 202): 5}, "latency": {"gone": ([0] * 13 + [5], 1.0)},
                             "live": {"gone": 1}}
    registry.ids = ["weather"]
    samples = _parse(await metrics.scrape())
    metrics.close()
    shown = {dict(ls).get("pipeline") for (n, ls) in samples}
    assert "weather" in shown and "gone" not in shown
    assert "gone" not in metrics.report()["requests"].__str__() and "gone" not in metrics.report()["live"]
