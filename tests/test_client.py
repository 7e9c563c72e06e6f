"""The SDK's robustness, against the real platform (and a closed port for connection errors):
tokens with whitespace around them, clear AuthError/ForbiddenError, ingest without a secret
refused before anything is sent, bounded retries that honour `Retry-After`, and an ingest
that rides through a pipeline restart without storing a batch twice."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import ray

from dash_ray.client import Client, ClientSettings
from dash_ray.errors import (
    AuthError,
    BackpressureError,
    ForbiddenError,
    SignatureError,
    UnavailableError,
)
from tests.conftest import free_port

pytestmark = pytest.mark.ray

FIELDS = {"n": {"path": "$.n", "type": "int"}}


def _deploy(platform, prefix: str, **changes: Any) -> tuple[str, str]:
    spec = {"id": f"{prefix}-{uuid.uuid4().hex[:6]}", "mapping": {"fields": FIELDS}, **changes}
    created = platform.client.deploy(spec)
    return created.id, created.ingest_secret


def test_settings_are_checked_and_overridden_by_the_keywords() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        ClientSettings(timeout=0)
    with pytest.raises(ValueError):
        ClientSettings(retries=-1)
    with Client("http://127.0.0.1:1", timeout=2.5, retries=1, settings=ClientSettings(backoff_s=0.01)) as client:
        assert client.settings == ClientSettings(timeout=2.5, retries=1, backoff_s=0.01)


def test_a_token_read_from_a_file_keeps_working_and_a_malformed_one_is_refused(platform, tmp_path) -> None:
    path = tmp_path / "admin.token"
    path.write_text(platform.token + "\n")
    with Client(platform.url, token=path.read_text()) as client:
        assert isinstance(client.list(), list)
    for bad in ("", "  \n", "two words", platform.token + "\nextra"):
        with pytest.raises(ValueError, match="token"):
            Client(platform.url, token=bad)


def test_401_is_an_auth_error_and_403_a_forbidden_error_without_retries(platform) -> None:
    started = time.monotonic()
    with Client(platform.url, token="dash_000000000000_not-a-real-token") as client, pytest.raises(AuthError):
        client.list()
    with Client(platform.url) as anonymous, pytest.raises(AuthError):
        anonymous.get("anything")
    reader = platform.client.create_token("read", name="sdk-reader")
    try:
        with Client(platform.url, token=reader["token"]) as client, pytest.raises(ForbiddenError):
            client.deploy({"id": "never-made", "mapping": {"fields": FIELDS}})
    finally:
        platform.client.revoke_token(reader["id"])
    assert time.monotonic() - started < 10  # answered at once, not retried


def test_ingest_without_a_secret_is_refused_before_sending(platform) -> None:
    pipeline_id, secret = _deploy(platform, "nosecret")
    for missing in (None, "", "   "):
        with pytest.raises(SignatureError, match="ingest secret"):
            platform.client.ingest(pipeline_id, {"n": 1}, secret=missing)
    assert platform.client.get(pipeline_id).counters.get("received", 0) == 0
    assert platform.client.ingest(pipeline_id, {"n": 1}, secret=f" {secret}\n").accepted == 1
    platform.client.delete(pipeline_id)


def test_connection_errors_are_retried_with_back_off_within_the_bounds() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = ClientSettings(retries=3, backoff_s=0.1, max_backoff_s=1.0)
    with Client(url, settings=settings) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="cannot reach Dash"):
            client.list()
        waited = time.monotonic() - started
        assert 0.7 <= waited < 5, waited  # 0.1 + 0.2 + 0.4 s between four attempts
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            client.restart("x")  # a POST too: a connection that was never opened sent nothing
        assert time.monotonic() - started >= 0.7
    with Client(url, settings=ClientSettings(retries=0)) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            client.list()
        assert time.monotonic() - started < 0.5
    budget = ClientSettings(retries=10, backoff_s=0.2, max_backoff_s=0.2, retry_budget_s=0.5)
    with Client(url, settings=budget) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            client.list()
        assert time.monotonic() - started < 2  # two waits fit in the budget, not ten


def test_a_full_queue_is_retried_after_retry_after_and_a_wait_past_the_budget_is_raised(platform) -> None:
    # The queue drains at the next flush (2 s away): the server's Retry-After says so, and
    # the client waits that long rather than its own 0.01 s back-off, then gets through.
    pipeline_id, secret = _deploy(platform, "retryafter", limits={"queue_records": 100},
                                  flush={"records": 1_000_000, "seconds": 2})
    platform.client.ingest(pipeline_id, [{"n": i} for i in range(90)], secret=secret)
    with Client(platform.url, token=platform.token, settings=ClientSettings(retries=5, backoff_s=0.01)) as client:
        started = time.monotonic()
        result = client.ingest(pipeline_id, [{"n": i} for i in range(90, 110)], secret=secret)
        waited = time.monotonic() - started
    assert result.accepted == 20 and result.last_seq == 110
    assert waited >= 1.0, waited  # Retry-After is whole seconds, at least 1
    platform.client.delete(pipeline_id)

    # Here the queue drains only in an hour: Retry-After says 3600 s, more than the budget,
    # so the client raises at once with the server's advice.
    pipeline_id, secret = _deploy(platform, "retrylate", limits={"queue_records": 100},
                                  flush={"records": 1_000_000, "seconds": 3600})
    platform.client.ingest(pipeline_id, [{"n": i} for i in range(90)], secret=secret)
    started = time.monotonic()
    with pytest.raises(BackpressureError) as caught:
        platform.client.ingest(pipeline_id, [{"n": i} for i in range(20)], secret=secret)
    assert time.monotonic() - started < 1 and caught.value.retry_after > platform.client.settings.retry_budget_s
    assert platform.client.records(pipeline_id, limit=1000)[-1]["seq"] == 90
    platform.client.delete(pipeline_id)


def test_ingest_rides_through_a_pipeline_restart_and_stores_each_batch_once(platform) -> None:
    pipeline_id, secret = _deploy(platform, "ride")
    platform.client.ingest(pipeline_id, {"n": 0}, secret=secret)
    actor = ray.get_actor(f"pipeline:{pipeline_id}", namespace=platform.settings.namespace)
    ray.kill(actor, no_restart=True)
    with Client(platform.url, token=platform.token, settings=ClientSettings(retries=20, max_backoff_s=1.0)) as client:
        results = [client.ingest(pipeline_id, [{"n": i}], secret=secret, idempotency_key=f"k{i}") for i in range(1, 6)]
    assert [r.accepted for r in results] == [1] * 5
    platform.wait_for(lambda: platform.client.get(pipeline_id).status == "running", what="running")
    seqs = [r["seq"] for r in platform.client.records(pipeline_id, limit=100)]
    values = [r["data"]["n"] for r in platform.client.records(pipeline_id, limit=100)]
    assert sorted(values) == [0, 1, 2, 3, 4, 5] and len(set(seqs)) == 6
    assert platform.client.get(pipeline_id).restarts == 1
    platform.client.delete(pipeline_id)


# -- what the SDK promises about when rows are queryable and what counts twice (issue 22) --


WEATHER = {"mapping": {"fields": {"time": {"path": "$.ts", "type": "timestamp"},
                                  "device": {"path": "$.device", "type": "string"},
                                  "temp_c": {"path": "$.temp", "type": "double"},
                                  "note": {"path": "$.note", "type": "string"},
                                  "n": {"path": "$.n", "type": "int"}}}}


def test_ingest_can_wait_until_queries_see_the_records(platform) -> None:
    """Item 5: the README's example queried right after `ingest` and printed []: rows are
    queryable once a flush stores them. `wait="stored"` returns only then."""
    pipeline_id, secret = _deploy(platform, "waitstored", flush={"records": 1_000_000, "seconds": 2.0}, **WEATHER)
    records = [{"ts": "2026-05-01T12:00:00Z", "device": "station-1", "temp": 21.5, "n": 1},
               {"ts": "2026-05-01T12:00:01Z", "device": "station-2", "temp": 19.0, "n": 2}]
    durable = platform.client.ingest(pipeline_id, records, secret=secret)
    assert platform.client.query(pipeline_id) == []  # durable, not stored yet: the flush is 2 s away
    started = time.monotonic()
    stored = platform.client.ingest(pipeline_id, records[:1], secret=secret, wait="stored")
    assert time.monotonic() - started < 10
    rows = platform.client.query(pipeline_id)
    assert sorted(r["seq"] for r in rows) == [1, 2, 3] and stored.last_seq == 3 == durable.last_seq + 1
    assert platform.client.get(pipeline_id).counters["stored_seq"] >= 3
    with pytest.raises(ValueError, match="wait must be"):
        platform.client.ingest(pipeline_id, records, secret=secret, wait="flushed")  # type: ignore[arg-type]
    platform.client.delete(pipeline_id, purge=True)


def test_a_wait_past_its_timeout_says_the_records_are_durable(platform) -> None:
    pipeline_id, secret = _deploy(platform, "waitlate", flush={"records": 1_000_000, "seconds": 3600})
    with pytest.raises(TimeoutError, match="durable but not stored after 0.5 s"):
        platform.client.ingest(pipeline_id, {"n": 1}, secret=secret, wait="stored", wait_timeout=0.5)
    assert platform.client.records(pipeline_id)[0]["data"] == {"n": 1}
    platform.client.delete(pipeline_id, purge=True)


def test_each_ingest_call_counts_and_a_resent_request_does_not(platform) -> None:
    """Item 11: three calls with one identical record in the same second stored it once. Now
    each call is signed at its own microsecond; the same signed request sent again (by the
    SDK's retry, or by whoever captured it) is still a duplicate, and so is a call that
    repeats an Idempotency-Key."""
    import httpx

    from dash_ray.ingest.signing import signature_header

    pipeline_id, secret = _deploy(platform, "samesecond")
    record = {"n": 7}
    results = [platform.client.ingest(pipeline_id, record, secret=secret) for _ in range(3)]
    assert [(r.accepted, r.duplicate) for r in results] == [(1, False)] * 3
    assert [r.last_seq for r in results] == [1, 2, 3]
    again = platform.client.ingest(pipeline_id, record, secret=secret, idempotency_key="k-1")
    repeated = platform.client.ingest(pipeline_id, record, secret=secret, idempotency_key="k-1")
    assert (again.duplicate, repeated.duplicate, repeated.last_seq) == (False, True, 4)

    body = b'{"n": 8}'
    signed = {"dash-signature": signature_header(secret, body), "content-type": "application/json"}
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        first = http.post(f"/v1/pipelines/{pipeline_id}/events", content=body,
                          headers={**signed, "idempotency-key": "a"})
        replayed = http.post(f"/v1/pipelines/{pipeline_id}/events", content=body,
                             headers={**signed, "idempotency-key": "b"})  # an attacker's new key
    assert first.status_code == replayed.status_code == 202
    assert replayed.json().get("duplicate") is True and replayed.json()["last_seq"] == first.json()["last_seq"] == 5
    assert [r["data"]["n"] for r in platform.client.records(pipeline_id)] == [7, 7, 7, 7, 8]
    platform.client.delete(pipeline_id, purge=True)


def test_query_table_types_its_columns_by_the_spec(platform) -> None:
    import pyarrow as pa

    pipeline_id, secret = _deploy(platform, "typed", **WEATHER)
    platform.client.ingest(pipeline_id, [{"ts": "2026-05-01T12:00:00Z", "device": "a", "temp": 21, "n": 1},
                                         {"ts": "2026-05-01T12:00:01.5Z", "device": "b", "temp": 19.5, "n": 2}],
                           secret=secret, wait="stored")
    table = platform.client.query_table(pipeline_id)
    utc = pa.timestamp("us", tz="UTC")
    assert table.schema == pa.schema([("seq", pa.int64()), ("time", utc), ("device", pa.string()),
                                      ("temp_c", pa.float64()), ("note", pa.string()), ("n", pa.int64())])
    assert table.column("time").to_pylist()[1].microsecond == 500_000
    assert table.column("note").null_count == 2  # only nulls, still a string column
    assert platform.client.query_table(pipeline_id, fields="seq").column_names == ["seq", "time"]
    empty = platform.client.query_table(pipeline_id, start="2030-01-01T00:00:00Z")
    assert empty.num_rows == 0 and empty.schema.field("time").type == utc
    buckets = platform.client.query_table(pipeline_id, bucket="1h", agg=["avg:n", "sum:n", "max:temp_c", "count",
                                                                         "last:note"], by="device")
    assert buckets.schema == pa.schema([("bucket", utc), ("device", pa.string()), ("avg_n", pa.float64()),
                                        ("sum_n", pa.int64()), ("max_temp_c", pa.float64()), ("count", pa.int64()),
                                        ("last_note", pa.string())])
    assert buckets.column("count").to_pylist() == [1, 1]
    # The raw API takes `seq` and `time` as fields too: every row has them.
    assert platform.client.query(pipeline_id, fields=["seq", "n"]) == [
        {"seq": 1, "time": "2026-05-01T12:00:00Z", "n": 1}, {"seq": 2, "time": "2026-05-01T12:00:01.500000Z", "n": 2}]
    platform.client.delete(pipeline_id, purge=True)


def test_a_second_rotation_keeps_the_first_secrets_grace(platform) -> None:
    """Item 7, end to end: S0 was promised a day by the first rotation."""
    pipeline_id, s0 = _deploy(platform, "rotate")
    s1 = platform.client.rotate_secret(pipeline_id)
    s2 = platform.client.rotate_secret(pipeline_id, grace_s=3600)
    for n, secret in enumerate((s0, s1, s2)):
        assert platform.client.ingest(pipeline_id, {"n": n}, secret=secret).accepted == 1
    platform.client.rotate_secret(pipeline_id, grace_s=0)  # a leak: every earlier secret goes
    for secret in (s0, s1, s2):
        with pytest.raises(SignatureError):
            platform.client.ingest(pipeline_id, {"n": 9}, secret=secret)
    platform.client.delete(pipeline_id, purge=True)


def test_an_identical_dashboard_put_changes_nothing(platform) -> None:
    pipeline_id, _ = _deploy(platform, "boards")
    board = {"id": f"b-{pipeline_id}", "title": "T", "widgets": [{"kind": "stat", "pipeline": pipeline_id,
                                                                  "agg": "count"}]}
    first = platform.client.put_dashboard(board)
    assert platform.client.put_dashboard(board).version == first.version == 1
    assert platform.client.put_dashboard({**board, "title": "U"}).version == 2
    platform.client.delete_dashboard(board["id"])
    platform.client.delete(pipeline_id)


def test_up_demo_keeps_a_demo_dashboard_the_user_edited_and_sends_alerts_out(platform) -> None:
    from dash_ray.cli.platform import start_demo

    start_demo(platform.client, platform.url)
    made = platform.client.dashboard("demo")
    edited = platform.client.put_dashboard({"id": "demo", "title": "Mine", "widgets": made.widgets[:1]})
    start_demo(platform.client, platform.url)  # `up --demo` again
    kept = platform.client.dashboard("demo")
    assert (kept.title, kept.version, len(kept.widgets)) == ("Mine", edited.version, 1)
    # Data going out: the demo's webhook sink signs each humid reading and sends it to the
    # alerts pipeline's hook on the same platform, which verifies it and stores it.
    alerts = platform.wait_for(lambda: platform.client.records("demo-alerts", limit=5), timeout=90,
                               what="an alert from the demo's sink")
    assert alerts[0]["data"]["humidity"] > 58 and alerts[0]["data"]["device"].startswith("sensor-")
    # The sink's counters come from its sink process a moment after the delivery's answer.
    [humid] = platform.wait_for(lambda: [s for s in platform.client.sinks("demo") if s["delivered"] >= 1],
                                timeout=30, what="the delivery counted")
    assert humid["name"] == "humid", humid
    platform.client.delete_dashboard("demo")
    platform.client.delete("demo", purge=True)
    platform.client.delete_secret("demo-alerts-ingest")
    platform.client.delete("demo-alerts", purge=True)
