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
