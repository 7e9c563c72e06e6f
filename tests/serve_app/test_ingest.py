"""Ingest over HTTP as API.md describes it: idempotency keys, backpressure (429 with
Retry-After), gzip and gzip bombs, webhook verification schemes, and secret rotation."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from dash_ray.errors import BackpressureError, SignatureError
from dash_ray.deploy.localray import read_run_file
from dash_ray.ingest.signing import signature_header

pytestmark = pytest.mark.ray

FIELDS = {"n": {"path": "$.n", "type": "int"}}


def deploy(platform, prefix: str, **changes: Any) -> tuple[str, str]:
    spec = {"id": f"{prefix}-{uuid.uuid4().hex[:6]}", "mapping": {"fields": FIELDS}, **changes}
    created = platform.client.deploy(spec)
    return created.id, created.ingest_secret


def post(platform, path: str, body: bytes, headers: dict[str, str]) -> Any:
    with platform.http() as http:
        return http.post(path, content=body, headers=headers)


def test_a_retried_request_with_the_same_key_is_stored_once(platform) -> None:
    pipeline_id, secret = deploy(platform, "idem")
    first = platform.client.ingest(pipeline_id, [{"n": 1}, {"n": 2}], secret=secret, idempotency_key="k-1")
    again = platform.client.ingest(pipeline_id, [{"n": 1}, {"n": 2}], secret=secret, idempotency_key="k-1")
    assert (first.last_seq, first.duplicate) == (2, False)
    assert (again.last_seq, again.accepted, again.duplicate) == (2, 2, True)
    other = platform.client.ingest(pipeline_id, {"n": 3}, secret=secret, idempotency_key="k-2")
    assert other.last_seq == 3
    assert [r["data"]["n"] for r in platform.client.records(pipeline_id)] == [1, 2, 3]
    too_long = orjson.dumps({"n": 4})
    response = post(platform, f"/v1/pipelines/{pipeline_id}/events", too_long,
                    {"dash-signature": signature_header(secret, too_long), "idempotency-key": "x" * 201})
    assert response.status_code == 400 and response.json()["error"]["where"] == "Idempotency-Key"


def test_a_full_queue_answers_429_with_retry_after(platform) -> None:
    pipeline_id, secret = deploy(platform, "full", limits={"queue_records": 100},
                                 flush={"records": 1_000_000, "seconds": 3600})
    platform.client.ingest(pipeline_id, [{"n": i} for i in range(90)], secret=secret)
    body = b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(20))
    response = post(platform, f"/v1/pipelines/{pipeline_id}/events", body,
                    {"content-type": "application/x-ndjson", "dash-signature": signature_header(secret, body)})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["type"] == "BackpressureError"
    with pytest.raises(BackpressureError) as caught:
        platform.client.ingest(pipeline_id, [{"n": i} for i in range(20)], secret=secret)
    assert caught.value.retry_after >= 1
    assert platform.client.records(pipeline_id, limit=1000)[-1]["seq"] == 90
    platform.client.delete(pipeline_id)


def test_gzip_is_accepted_and_a_gzip_bomb_is_refused(platform) -> None:
    pipeline_id, secret = deploy(platform, "gzip", limits={"max_body_bytes": 65536})
    body = gzip.compress(b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(100)))
    headers = {"content-type": "application/x-ndjson", "content-encoding": "gzip",
               "dash-signature": signature_header(secret, body)}
    ok = post(platform, f"/v1/pipelines/{pipeline_id}/events", body, headers)
    assert ok.status_code == 202 and ok.json()["accepted"] == 100
    bomb = gzip.compress(b"[" + b" " * (50 * 2**20) + b"]")
    assert len(bomb) < 65536
    headers = {"content-encoding": "gzip", "dash-signature": signature_header(secret, bomb)}
    refused = post(platform, f"/v1/pipelines/{pipeline_id}/events", bomb, headers)
    assert refused.status_code == 413
    assert len(platform.client.records(pipeline_id, limit=1000)) == 100


def test_github_style_webhook_and_delivery_id(platform) -> None:
    pipeline_id, secret = deploy(platform, "gh", source={"kind": "webhook", "verify": "github",
                                                         "idempotency_header": "X-GitHub-Delivery"})
    body = orjson.dumps({"n": 7})
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"x-hub-signature-256": signature, "x-github-delivery": "d-1"}
    first = post(platform, f"/v1/hooks/{pipeline_id}", body, headers)
    redelivered = post(platform, f"/v1/hooks/{pipeline_id}", body, headers)
    assert first.status_code == 202 and redelivered.json().get("duplicate") is True
    wrong = post(platform, f"/v1/hooks/{pipeline_id}", body, {"x-hub-signature-256": "sha256=" + "0" * 64})
    assert wrong.status_code == 401
    pushed = post(platform, f"/v1/pipelines/{pipeline_id}/events", body,
                  {"dash-signature": signature_header(secret, body)})
    assert pushed.status_code == 404  # a webhook pipeline takes no pushed events
    assert [r["data"]["n"] for r in platform.client.records(pipeline_id)] == [7]


def test_generic_header_hmac_webhook(platform) -> None:
    pipeline_id, secret = deploy(platform, "hmac", source={
        "kind": "webhook", "verify": "hmac", "header": "X-Signature", "algorithm": "sha512",
        "encoding": "base64"})
    body = orjson.dumps([{"n": 1}, {"n": 2}])
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha512).digest()).decode()
    assert post(platform, f"/v1/hooks/{pipeline_id}", body, {"x-signature": digest}).status_code == 202
    assert post(platform, f"/v1/hooks/{pipeline_id}", body, {"x-signature": digest[:-4] + "AAA="}).status_code == 401


def test_rotation_keeps_the_old_secret_valid_for_its_grace(platform) -> None:
    pipeline_id, old = deploy(platform, "rotate")
    new = platform.client.rotate_secret(pipeline_id, grace_s=600)
    assert new != old
    assert platform.client.ingest(pipeline_id, {"n": 1}, secret=old).last_seq == 1
    assert platform.client.ingest(pipeline_id, {"n": 2}, secret=new).last_seq == 2
    newest = platform.client.rotate_secret(pipeline_id, grace_s=0)
    with pytest.raises(SignatureError):
        platform.client.ingest(pipeline_id, {"n": 3}, secret=new)
    with pytest.raises(SignatureError):
        platform.client.ingest(pipeline_id, {"n": 3}, secret=old)
    assert platform.client.ingest(pipeline_id, {"n": 3}, secret=newest).last_seq == 3


def test_secrets_are_encrypted_at_rest(platform) -> None:
    pipeline_id, secret = deploy(platform, "atrest")
    catalog = Path(platform.settings.catalog_url)
    files = [f for f in catalog.parent.iterdir() if f.name.startswith(catalog.name)]
    assert files and all(secret.encode() not in f.read_bytes() for f in files)
    # ... and never logged, by Dash or by Ray, after it was used and rotated.
    platform.client.ingest(pipeline_id, {"n": 1}, secret=secret)
    platform.client.rotate_secret(pipeline_id, grace_s=60)
    run = read_run_file(platform.settings.home)
    logs = [f for root in (Path(run.temp_dir), Path(platform.settings.home) / "logs")
            for f in root.rglob("*") if f.is_file() and f.suffix in (".log", ".out", ".err", "")]
    assert len(logs) > 5
    assert not [f for f in logs if secret.encode() in f.read_bytes()]
