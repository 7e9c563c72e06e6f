"""`GET /v1/pipelines/{id}/query` on the running platform: raw rows with paging and time
buckets with `by`, through HTTP and the SDK (rows and a pyarrow table), answered from the
lake with DuckDB; bad parameters are 400s naming the parameter, tokens are checked."""

from __future__ import annotations

import uuid

import pytest

from dash_ray.errors import AuthError, NotFoundError, QueryError

pytestmark = pytest.mark.ray

BASE = 1_777_636_800  # 2026-05-01T12:00:00Z


def _deploy(platform) -> tuple[str, str]:
    pipeline_id = f"query-{uuid.uuid4().hex[:6]}"
    created = platform.client.deploy({
        "id": pipeline_id,
        "mapping": {"fields": {
            "time": {"path": "$.ts", "type": "timestamp", "unit": "s"},
            "device": {"path": "$.device", "type": "string"},
            "temp_c": {"path": "$.temp", "type": "double"},
        }},
        "flush": {"records": 1000, "seconds": 0.2},
    })
    return pipeline_id, created.ingest_secret


def _load(platform, pipeline_id: str, secret: str) -> list[dict]:
    readings = [{"ts": BASE + i * 15, "device": f"d{i % 2}", "temp": 20 + i % 5} for i in range(40)]
    platform.client.ingest(pipeline_id, readings, secret=secret)
    platform.wait_for(lambda: len(platform.client.query(pipeline_id, limit=100)) == 40, what="rows to be stored")
    return readings


def test_raw_rows_and_buckets_through_http_and_the_sdk(platform) -> None:
    pipeline_id, secret = _deploy(platform)
    readings = _load(platform, pipeline_id, secret)
    with platform.http() as http:
        page = http.get(f"/v1/pipelines/{pipeline_id}/query", params={"limit": 3, "fields": "temp_c"})
        assert page.status_code == 200 and page.headers["dash-query-store"] == "lake"
        assert page.json() == {"rows": [{"seq": 1, "time": "2026-05-01T12:00:00Z", "temp_c": 20.0},
                                         {"seq": 2, "time": "2026-05-01T12:00:15Z", "temp_c": 21.0},
                                         {"seq": 3, "time": "2026-05-01T12:00:30Z", "temp_c": 22.0}], "next": 3}
        buckets = http.get(f"/v1/pipelines/{pipeline_id}/query",
                           params={"bucket": "1m", "agg": "avg:temp_c,count", "by": "device",
                                   "from": "2026-05-01T12:00:00Z", "to": "2026-05-01T12:02:00Z"}).json()
    assert buckets["rows"][:2] == [
        {"bucket": "2026-05-01T12:00:00Z", "device": "d0", "avg_temp_c": 21.0, "count": 2},
        {"bucket": "2026-05-01T12:00:00Z", "device": "d1", "avg_temp_c": 22.0, "count": 2},
    ]
    assert len(buckets["rows"]) == 4
    pages = list(platform.client.query_pages(pipeline_id, limit=15))
    assert [len(p) for p in pages] == [15, 15, 10]
    table = platform.client.query_table(pipeline_id)
    assert table.num_rows == 40 and table.column("temp_c").to_pylist() == [float(r["temp"]) for r in readings]
    summary = platform.client.query(pipeline_id, agg=["max:temp_c", "count"])
    assert summary == [{"max_temp_c": 24.0, "count": 40}]


def test_bad_parameters_tokens_and_unknown_pipelines(platform) -> None:
    pipeline_id, _ = _deploy(platform)
    with pytest.raises(QueryError) as caught:
        platform.client.query(pipeline_id, agg="median:temp_c")
    assert caught.value.where == "agg"
    with platform.http() as http:
        bad = http.get(f"/v1/pipelines/{pipeline_id}/query", params={"bucket": "1m"})
        assert bad.status_code == 400 and bad.json()["error"]["where"] == "bucket"
        assert http.get(f"/v1/pipelines/{pipeline_id}/query", params={"from": "soon"}).status_code == 400
    with platform.http(token="dash_000000000000_nope") as http:
        assert http.get(f"/v1/pipelines/{pipeline_id}/query").status_code == 401
    read = platform.client.create_token("read", name="query-reader")
    with platform.http(token=read["token"]) as http:
        assert http.get(f"/v1/pipelines/{pipeline_id}/query").json() == {"rows": [], "next": None}
    with pytest.raises(NotFoundError):
        platform.client.query("no-such-pipeline")
    from dash_ray.client import Client

    with Client(platform.url) as anonymous, pytest.raises(AuthError):
        anonymous.query(pipeline_id)


def test_a_filter_keeps_the_rows_of_the_values_given(platform, tmp_path) -> None:
    """[ext] `filter=device:d0`: over HTTP, the SDK (a mapping or the API's text) and the
    CLI; an unknown or non-string/int field, too many values and a value that reads like SQL
    are refused or matched literally, never run."""
    from tests.conftest import dash

    pipeline_id, secret = _deploy(platform)
    _load(platform, pipeline_id, secret)
    with platform.http() as http:
        answer = http.get(f"/v1/pipelines/{pipeline_id}/query", params={"agg": "count", "filter": "device:d0"})
        assert answer.status_code == 200 and answer.json() == {"rows": [{"count": 20}]}
        rows = http.get(f"/v1/pipelines/{pipeline_id}/query", params={"filter": "device:d1", "limit": 100}).json()
        assert {r["device"] for r in rows["rows"]} == {"d1"} and len(rows["rows"]) == 20
        for bad in ("temp_c:1", "nope:a", "device", "device:" + ",".join(["x"] * 101), "device:" + "x" * 201):
            refused = http.get(f"/v1/pipelines/{pipeline_id}/query", params={"agg": "count", "filter": bad})
            assert refused.status_code == 400 and refused.json()["error"]["where"] == "filter", bad
        literal = http.get(f"/v1/pipelines/{pipeline_id}/query",
                           params={"agg": "count", "filter": "device:d0') OR TRUE OR ('1"}).json()
        assert literal == {"rows": []}
    assert platform.client.query(pipeline_id, agg="count", filter={"device": ["d0", "d1"]}) == [{"count": 40}]
    assert platform.client.query(pipeline_id, agg="count", filter="device:d1") == [{"count": 20}]
    cli = dash(tmp_path / "home", 0, "query", pipeline_id, "--agg", "count", "--filter", "device:d0", "--json",
               DASH_URL=platform.url, DASH_TOKEN=platform.token)
    assert cli.returncode == 0, cli.stderr
    assert '"count": 20' in cli.stdout
