"""The walking skeleton end to end on a real local Ray with Serve: deploy through the SDK and
HTTP, signed ingest of JSON, arrays and NDJSON, reading back through `/records` and from the
lake with DuckDB, refusals, and supervision (a killed pipeline actor restarts, one that cannot
start goes `failed`, a restarted registry keeps and adopts every pipeline)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
import ray

from dash_ray.errors import SignatureError, SpecError, UnavailableError
from dash_ray.ingest.signing import signature_header
from dash_ray.lake import Lake

pytestmark = pytest.mark.ray


def spec(prefix: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": f"{prefix}-{uuid.uuid4().hex[:6]}",
        "source": {"kind": "push"},
        "mapping": {"fields": {
            "time": {"path": "$.ts", "type": "timestamp"},
            "device": {"path": "$.device_id", "type": "string", "required": True},
            "temp_c": {"path": "$.metrics.temp", "type": "double"},
        }},
        "flush": {"records": 1000, "seconds": 0.2},
    }
    data.update(changes)
    return data


def reading(i: int) -> dict[str, Any]:
    return {"ts": "2026-05-01T12:00:00Z", "device_id": f"dev-{i}", "metrics": {"temp": 20 + i}}


def deploy(platform, data: dict[str, Any]) -> tuple[str, str]:
    created = platform.client.deploy(data)
    assert created.ingest_secret
    return created.id, created.ingest_secret


def test_deploy_through_http_and_sdk(platform) -> None:
    data = spec("http")
    with platform.http() as http:
        first = http.put(f"/v1/pipelines/{data['id']}", json=data)
        assert first.status_code == 201, first.text
        body = first.json()
        assert body["ingest_secret"].startswith("whsec_") and body["status"] == "running"
        data["hot_records"] = 50
        second = http.put(f"/v1/pipelines/{data['id']}", json=data)
        assert second.status_code == 200 and "ingest_secret" not in second.json()
        assert second.json()["version"] == 2 and second.json()["spec"]["hot_records"] == 50
    via_sdk = platform.client.deploy(spec("sdk"))
    assert via_sdk.status == "running" and via_sdk.ingest_secret
    ids = {p.id for p in platform.client.list()}
    assert {data["id"], via_sdk.id} <= ids
    platform.client.delete(via_sdk.id)
    assert via_sdk.id not in {p.id for p in platform.client.list()}


def test_invalid_spec_is_422_with_every_field_path(platform) -> None:
    bad = spec("bad", flush={"records": 0})
    bad["mapping"]["fields"]["temp_c"]["type"] = "float"
    with platform.http() as http:
        response = http.put(f"/v1/pipelines/{bad['id']}", json=bad)
    assert response.status_code == 422
    paths = {p["path"] for p in response.json()["error"]["problems"]}
    assert {"mapping.fields.temp_c.type", "flush.records"} <= paths
    expr = spec("expr")
    expr["mapping"]["fields"]["temp_f"] = {"expr": "temp_c * 9 / nope + 32", "type": "double"}
    with pytest.raises(SpecError) as caught:
        platform.client.deploy(expr)
    [problem] = caught.value.problems
    assert problem.path == "mapping.fields.temp_f.expr" and problem.position == 14
    assert expr["id"] not in {p.id for p in platform.client.list()}


def test_signed_ingest_of_json_arrays_and_ndjson_reads_back(platform) -> None:
    pipeline_id, secret = deploy(platform, spec("ingest"))
    one = platform.client.ingest(pipeline_id, reading(1), secret=secret)
    assert (one.accepted, one.last_seq) == (1, 1)
    array = platform.client.ingest(pipeline_id, [reading(2), reading(3)], secret=secret, ndjson=False)
    assert (array.accepted, array.last_seq) == (2, 3)
    body = b"".join(orjson.dumps(reading(i)) + b"\n" for i in (4, 5, 6))
    headers = {"content-type": "application/x-ndjson", "dash-signature": signature_header(secret, body)}
    with platform.http() as http:
        response = http.post(f"/v1/pipelines/{pipeline_id}/events", content=body, headers=headers)
        assert response.status_code == 202 and response.json() == {"accepted": 3, "last_seq": 6}
        records = http.get(f"/v1/pipelines/{pipeline_id}/records").json()["records"]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[3] == {"seq": 4, "time": "2026-05-01T12:00:00Z",
                          "data": {"device": "dev-4", "temp_c": 24.0}}
    assert [r["seq"] for r in platform.client.records(pipeline_id, after=4)] == [5, 6]

    lake = Lake.from_url(platform.settings.lake_url)

    def silver() -> list[tuple]:
        dataset = lake.dataset("silver", pipeline_id)
        if dataset is None:
            return []
        return duckdb.sql("SELECT seq, device, temp_c FROM dataset ORDER BY seq").fetchall()

    # A range's silver rows are written before its bronze file (the mark that commits it): wait for both.
    rows = platform.wait_for(lambda: len(silver()) == 6 and lake.last_seq("bronze", pipeline_id) == 6 and silver(),
                             what="silver rows and their bronze mark in the lake")
    assert rows == [(i, f"dev-{i}", 20.0 + i) for i in range(1, 7)]


def test_wrong_or_missing_signature_is_401_and_stores_nothing(platform) -> None:
    pipeline_id, secret = deploy(platform, spec("sig"))
    body = orjson.dumps(reading(1))
    with platform.http() as http:
        url = f"/v1/pipelines/{pipeline_id}/events"
        wrong = http.post(url, content=body, headers={"dash-signature": signature_header("whsec_wrong", body)})
        missing = http.post(url, content=body)
        stale = http.post(url, content=body, headers={"dash-signature": signature_header(secret, body, 1_000)})
        tampered = http.post(url, content=body + b" ", headers={"dash-signature": signature_header(secret, body)})
    for response in (wrong, missing, stale, tampered):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "SignatureError"
    with pytest.raises(SignatureError):
        platform.client.ingest(pipeline_id, reading(1), secret="whsec_nope")
    assert platform.client.records(pipeline_id) == []
    assert platform.client.get(pipeline_id).counters.get("last_seq", 0) == 0


def test_request_errors_have_clear_statuses(platform) -> None:
    pipeline_id, secret = deploy(platform, spec("errors", limits={"max_body_bytes": 2048}))

    def post(body: bytes, content_type: str = "application/json") -> Any:
        headers = {"content-type": content_type, "dash-signature": signature_header(secret, body)}
        with platform.http() as http:
            return http.post(f"/v1/pipelines/{pipeline_id}/events", content=body, headers=headers)

    malformed = post(b'{"a": 1}\n{"b": \n', "application/x-ndjson")
    assert malformed.status_code == 400 and "line 2" in malformed.json()["error"]["message"]
    assert post(b"a,b\n1,2\n", "text/csv").status_code == 415
    assert post(orjson.dumps([reading(i) for i in range(100)])).status_code == 413
    mixed = post(orjson.dumps([reading(1), 7, reading(2)]))
    assert mixed.status_code == 202
    assert mixed.json()["rejected"] == [{"index": 1, "reason": "record is not a JSON object"}]
    with platform.http() as http:
        assert http.post("/v1/pipelines/no-such-pipe/events", content=b"{}").status_code == 404
        assert http.post("/v1/pipelines/NOT_AN_ID/events", content=b"{}").status_code == 404
        assert http.post(f"/v1/hooks/{'x' * 300}", content=b"{}").status_code == 404
        assert http.get("/v1/pipelines/no-such-pipe").status_code == 404
    assert [r["seq"] for r in platform.client.records(pipeline_id)] == [1, 3]


def test_admin_routes_check_token_scopes(platform) -> None:
    with platform.http(token="dash_000000000000_nope") as http:
        assert http.get("/v1/pipelines").status_code == 401
    read = platform.client.create_token("read", name="reader")
    with platform.http(token=read["token"]) as http:
        assert http.get("/v1/pipelines").status_code == 200
        data = spec("scoped")
        forbidden = http.put(f"/v1/pipelines/{data['id']}", json=data)
        assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "ForbiddenError"
    with platform.http() as http:
        assert http.get("/healthz").status_code == 200
        assert http.put("/v1/pipelines/x1", content=b"not json").status_code == 400
        mismatch = http.put("/v1/pipelines/x1", json={"id": "x2"})
        assert mismatch.status_code == 422 and mismatch.json()["error"]["where"] == "id"
        assert http.put("/v1/pipelines/x1", json=[1]).status_code == 422
        assert http.put("/v1/pipelines/x1", content=b"{" + b" " * (2 * 2**20) + b"}").status_code == 413
        assert http.get("/v1/pipelines/x1/records?limit=abc").status_code == 400
        assert http.get("/v1/pipelines/x1/records?limit=999999").status_code == 400
        assert http.post("/v1/tokens", json={"scope": "root"}).status_code == 422
        assert http.delete("/v1/tokens/nope").status_code == 404


def _actor(platform, pipeline_id: str) -> Any:
    return ray.get_actor(f"pipeline:{pipeline_id}", namespace=platform.settings.namespace)


def _ingest_retrying(platform, pipeline_id: str, secret: str, record: dict) -> Any:
    def attempt() -> Any:
        try:
            return platform.client.ingest(pipeline_id, record, secret=secret)
        except UnavailableError:
            return None
    return platform.wait_for(attempt, what="ingest to be accepted again")


def test_killed_pipeline_actor_is_restarted_and_takes_ingest_again(platform) -> None:
    pipeline_id, secret = deploy(platform, spec("kill"))
    platform.client.ingest(pipeline_id, reading(1), secret=secret)
    ray.kill(_actor(platform, pipeline_id), no_restart=True)
    body = orjson.dumps(reading(9))
    with platform.http() as http:
        refused = http.post(f"/v1/pipelines/{pipeline_id}/events", content=body,
                            headers={"dash-signature": signature_header(secret, body)})
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    restarted = platform.wait_for(
        lambda: (p := platform.client.get(pipeline_id)).restarts == 1 and p.status == "running" and p,
        what="the registry to restart the pipeline")
    assert "ActorDiedError" in (restarted.last_error or "") or "died" in (restarted.last_error or "").lower()
    ack = _ingest_retrying(platform, pipeline_id, secret, reading(2))
    assert ack.last_seq == 2  # the first record was logged, so numbering goes on
    assert [r["seq"] for r in platform.client.records(pipeline_id)] == [1, 2]
    with platform.http() as http:
        listed = {p["id"]: p for p in http.get("/v1/pipelines").json()["pipelines"]}
    assert listed[pipeline_id]["restarts"] == 1


def test_pipeline_that_crashes_on_start_goes_failed(platform) -> None:
    # A lake under an allowed root (the platform's) whose folder cannot be made, because a
    # file stands where it would go: the start fails as /dev/null/lake's did.
    blocker = Path(platform.settings.lake_url) / f"not-a-folder-{uuid.uuid4().hex[:6]}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("")
    data = spec("crash", storage={"lake": f"{blocker}/lake"})
    with platform.http() as http:
        response = http.put(f"/v1/pipelines/{data['id']}", json=data)
    assert response.status_code == 201
    failed = platform.wait_for(lambda: (p := platform.client.get(data["id"])).status == "failed" and p,
                               timeout=90, what="the pipeline to be marked failed")
    assert failed.restarts == platform.settings.restart.max_restarts
    assert "not usable" in failed.last_error
    secret = response.json()["ingest_secret"]
    with pytest.raises(UnavailableError):
        platform.client.ingest(data["id"], reading(1), secret=secret)


def test_restarted_registry_keeps_and_adopts_every_pipeline(platform) -> None:
    pipeline_id, secret = deploy(platform, spec("adopt"))
    platform.client.ingest(pipeline_id, reading(1), secret=secret)
    before = {p.id for p in platform.client.list()}
    actor_id = _actor(platform, pipeline_id)._actor_id.hex()
    registry = ray.get_actor("registry", namespace=platform.settings.namespace)
    ray.kill(registry, no_restart=False)

    def listed() -> set[str]:
        return {p.id for p in platform.client.list()}

    assert platform.wait_for(lambda: listed() == before and listed(), what="the registry to come back")
    assert _actor(platform, pipeline_id)._actor_id.hex() == actor_id  # adopted, not restarted
    assert platform.client.get(pipeline_id).status == "running"
    ack = _ingest_retrying(platform, pipeline_id, secret, reading(2))
    assert ack.last_seq == 2


def test_delete_keeps_data_unless_purged(platform) -> None:
    data = spec("purge")
    pipeline_id, secret = deploy(platform, data)
    platform.client.ingest(pipeline_id, [reading(1), reading(2)], secret=secret)
    lake = Lake.from_url(platform.settings.lake_url)
    platform.wait_for(lambda: lake.last_seq("bronze", pipeline_id) == 2, what="the flush")
    platform.client.delete(pipeline_id)
    assert lake.last_seq("bronze", pipeline_id) == 2  # stored data stays
    again = platform.client.deploy(data)
    assert again.ingest_secret and again.ingest_secret != secret
    # The re-created pipeline goes on from what the lake holds.
    assert platform.client.ingest(pipeline_id, reading(3), secret=again.ingest_secret).last_seq == 3
    assert [r["seq"] for r in platform.client.records(pipeline_id)] == [1, 2, 3]
    platform.client.delete(pipeline_id, purge=True)
    assert lake.files("bronze", pipeline_id) == [] and lake.files("silver", pipeline_id) == []
    assert not platform.settings.wal_dir(pipeline_id).exists()
    with platform.http() as http:
        assert http.get(f"/v1/pipelines/{pipeline_id}").status_code == 404


# -- supervision and admin hardening ---------------------------------------------------------


def test_concurrent_creating_puts_make_one_pipeline_and_keep_the_first_secret(platform) -> None:
    import threading

    for _ in range(3):
        data = spec("race")
        barrier = threading.Barrier(4)
        answers: list[Any] = []

        def put() -> None:
            with platform.http() as http:
                barrier.wait()
                answers.append(http.put(f"/v1/pipelines/{data['id']}", json=data))

        threads = [threading.Thread(target=put) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 200, 200, 201], [a.text for a in answers]
        [created] = [a for a in answers if a.status_code == 201]
        secret = created.json()["ingest_secret"]
        assert all("ingest_secret" not in a.json() for a in answers if a is not created)
        assert platform.client.ingest(data["id"], reading(1), secret=secret).last_seq == 1


def test_redeploying_an_identical_spec_changes_nothing(platform) -> None:
    data = spec("same")
    pipeline_id, _ = deploy(platform, data)
    actor_id = _actor(platform, pipeline_id)._actor_id.hex()
    with platform.http() as http:
        again = http.put(f"/v1/pipelines/{pipeline_id}", json=data)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 1 and again.json()["status"] == "running"
    assert _actor(platform, pipeline_id)._actor_id.hex() == actor_id  # not restarted


def test_a_spec_may_be_put_as_yaml(platform) -> None:
    import yaml

    data = spec("yaml")
    url = f"/v1/pipelines/{data['id']}"
    with platform.http() as http:
        created = http.put(url, content=yaml.safe_dump(data, sort_keys=False),
                           headers={"content-type": "application/yaml"})
        assert created.status_code == 201, created.text
        assert list(created.json()["spec"]["mapping"]["fields"]) == ["time", "device", "temp_c"]
        data["hot_records"] = 7
        for kind, version in (("text/yaml", 2), ("application/x-yaml; charset=utf-8", 2)):
            updated = http.put(url, content=yaml.safe_dump(data), headers={"content-type": kind})
            assert updated.status_code == 200, updated.text
            assert updated.json()["version"] == version and updated.json()["spec"]["hot_records"] == 7
        bad = http.put(url, content=b"id: [unclosed\n", headers={"content-type": "application/yaml"})
        assert bad.status_code == 400 and "YAML" in bad.json()["error"]["message"]
        assert "line" in bad.json()["error"]["message"]
        listed = http.put(url, content=b"- 1\n- 2\n", headers={"content-type": "text/yaml"})
        assert listed.status_code == 422
        big = http.put(url, content=b"#" * (2 * 2**20), headers={"content-type": "application/yaml"})
        assert big.status_code == 413


def test_counters_are_current_right_after_a_202(platform) -> None:
    data = spec("fresh", mapping={
        "fields": {"device": {"path": "$.device_id", "type": "string"},
                   "temp_c": {"path": "$.metrics.temp", "type": "double"}},
        "filter": "device <> 'test-rig'",
        "validate": [{"field": "temp_c", "max": 60}]})
    pipeline_id, secret = deploy(platform, data)
    for round_no in range(1, 4):
        # Each round's body differs: the same body signed in the same second is a replay.
        batch = [reading(round_no), {"device_id": "hot", "metrics": {"temp": 99}}, {"device_id": "test-rig"}]
        platform.client.ingest(pipeline_id, batch, secret=secret)
        platform.client.records(pipeline_id)
        with platform.http() as http:
            body = http.get(f"/v1/pipelines/{pipeline_id}").json()
        counters = body["counters"]
        assert (counters["mapped"], counters["dead"], counters["filtered"]) == (round_no,) * 3, counters
        assert counters["last_seq"] == 3 * round_no
        assert body["counters_at"].endswith("Z")


def test_a_crash_looping_pipeline_is_retried_until_it_runs_and_loses_nothing(platform) -> None:
    data = spec("loop", flush={"records": 1000, "seconds": 0.2})
    pipeline_id, secret = deploy(platform, data)
    sent = 0
    for kill in range(1, 8):
        sent += 1
        _ingest_retrying(platform, pipeline_id, secret, reading(sent))
        ray.kill(_actor(platform, pipeline_id), no_restart=True)
        platform.wait_for(lambda: (p := platform.client.get(pipeline_id)).restarts == kill
                          and p.status == "running" and p, timeout=60,
                          what=f"the pipeline to run again after kill {kill}")
    pipeline = platform.client.get(pipeline_id)
    assert pipeline.status == "running" and pipeline.restarts == 7
    lake = Lake.from_url(platform.settings.lake_url)
    platform.wait_for(lambda: lake.last_seq("bronze", pipeline_id) == sent, what="every record in the lake")
    # The web tier's handle on the killed actor answers one 503 before it is looked up again.
    platform.wait_for(lambda: [r["seq"] for r in platform.client.records(pipeline_id)] == list(range(1, sent + 1)),
                      what="every record in the hot cache")


def test_a_lake_outside_the_configured_roots_is_refused(platform) -> None:
    platform_lake = platform.settings.lake_url
    with platform.http() as http:
        for lake in ("memory://lake", "/tmp/elsewhere", f"{platform_lake}/bronze/x"):
            data = spec("roots", storage={"lake": lake})
            response = http.put(f"/v1/pipelines/{data['id']}", json=data)
            assert response.status_code == 422, (lake, response.text)
            assert response.json()["error"]["where"] == "storage.lake"
