"""Ingest over HTTP as API.md describes it: idempotency keys, backpressure (429 with
Retry-After), gzip and gzip bombs, webhook verification schemes, and secret rotation."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from dash_ray.deploy.localray import read_run_file
from dash_ray.errors import BackpressureError, SignatureError
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


# -- hostile input --------------------------------------------------------------------------


def _raw_post(platform, path: str, headers: dict[str, str]) -> socket.socket:
    """Send only the request line and headers of a POST (no body yet)."""
    host, port = platform.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    sock.sendall("\r\n".join(lines).encode("latin-1"))
    return sock


def _status(sock: socket.socket, timeout: float) -> tuple[int, bytes]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize("signature", [None, "t=1000,v1=" + "ab" * 32, "t=now,v1=zz", "sha256=00"])
def test_an_unsigned_request_is_refused_before_its_body_is_read(platform, signature) -> None:
    """Headers that cannot be authentic (no signature, a stale one, a malformed one) get 401
    at once: the server does not wait for the 16 MB the client says it will send."""
    pipeline_id, _ = deploy(platform, "pre")
    headers = {"Content-Type": "application/json", "Content-Length": str(16 * 2**20 - 1)}
    if signature:
        headers["Dash-Signature"] = signature.replace("now", str(int(time.time())))
    sock = _raw_post(platform, f"/v1/pipelines/{pipeline_id}/events", headers)
    try:
        status, head = _status(sock, timeout=10)
    finally:
        sock.close()
    assert status == 401, head


def test_unverified_bodies_share_one_bounded_budget(platform) -> None:
    """Bodies read before their signature is checked count against one byte budget per
    replica (64 MiB): past it a request gets 503 with Retry-After without its body being read,
    and the budget comes back when those requests end, leaving the pipeline unaffected."""
    pipeline_id, secret = deploy(platform, "budget")
    size = 16 * 2**20
    plausible = {"Content-Type": "application/json", "Content-Length": str(size),
                 "Dash-Signature": f"t={int(time.time())},v1={'ab' * 32}"}
    socks = [_raw_post(platform, f"/v1/pipelines/{pipeline_id}/events", plausible) for _ in range(8)]
    try:
        refused = []
        for sock in socks:
            try:
                status, head = _status(sock, timeout=3)
            except TimeoutError:
                continue  # admitted: the server is waiting for its body
            refused.append((status, head))
        assert len(refused) == 4, refused  # 4 x 16 MiB fill the budget
        assert all(status == 503 and b"retry-after" in head.lower() for status, head in refused), refused
    finally:
        for sock in socks:
            sock.close()
    body = orjson.dumps({"n": 1})

    def stored() -> bool:
        response = post(platform, f"/v1/pipelines/{pipeline_id}/events", body,
                        {"dash-signature": signature_header(secret, body)})
        return response.status_code == 202 and response.json()["last_seq"] == 1

    platform.wait_for(stored, timeout=30, what="the budget to come back")


def test_a_replayed_push_is_stored_once_whatever_its_idempotency_key(platform) -> None:
    pipeline_id, secret = deploy(platform, "replay")
    body = orjson.dumps({"n": 1})
    signed = {"dash-signature": signature_header(secret, body)}
    first = post(platform, f"/v1/pipelines/{pipeline_id}/events", body, {**signed, "idempotency-key": "a"})
    again = post(platform, f"/v1/pipelines/{pipeline_id}/events", body, {**signed, "idempotency-key": "b"})
    bare = post(platform, f"/v1/pipelines/{pipeline_id}/events", body, signed)
    assert first.status_code == again.status_code == bare.status_code == 202
    assert first.json().get("duplicate") is None
    assert again.json()["duplicate"] is True and bare.json()["duplicate"] is True
    assert again.json()["last_seq"] == bare.json()["last_seq"] == first.json()["last_seq"] == 1
    # A new request (a new signature) with the same body is stored.
    later = signature_header(secret, body, int(time.time()) + 1)
    assert post(platform, f"/v1/pipelines/{pipeline_id}/events", body,
                {"dash-signature": later}).json()["last_seq"] == 2
    assert [r["seq"] for r in platform.client.records(pipeline_id)] == [1, 2]


def test_a_replayed_github_delivery_is_a_duplicate_even_under_another_delivery_id(platform) -> None:
    """GitHub signs only the body: its delivery id header can be changed by whoever replays a
    captured delivery, so the replay key comes from the signature."""
    pipeline_id, secret = deploy(platform, "ghreplay", source={"kind": "webhook", "verify": "github"})
    body = orjson.dumps({"n": 5})
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    first = post(platform, f"/v1/hooks/{pipeline_id}", body,
                 {"x-hub-signature-256": signature, "x-github-delivery": "d-1"})
    replayed = post(platform, f"/v1/hooks/{pipeline_id}", body,
                    {"x-hub-signature-256": signature, "x-github-delivery": "d-2", "idempotency-key": "x"})
    assert first.status_code == replayed.status_code == 202
    assert replayed.json()["duplicate"] is True and replayed.json()["last_seq"] == 1
    assert [r["data"]["n"] for r in platform.client.records(pipeline_id)] == [5]


def test_a_request_larger_than_the_whole_queue_is_413_not_429_forever(platform) -> None:
    pipeline_id, secret = deploy(platform, "huge", limits={"queue_records": 100, "queue_bytes": 2**20,
                                                            "max_body_bytes": 4 * 2**20})
    many = b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(101))
    response = post(platform, f"/v1/pipelines/{pipeline_id}/events", many,
                    {"content-type": "application/x-ndjson", "dash-signature": signature_header(secret, many)})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["where"] == "limits.queue_records"
    assert "100" in response.json()["error"]["message"]
    big = b"".join(orjson.dumps({"n": i, "pad": "x" * 20_000}) + b"\n" for i in range(60))
    assert 2**20 < len(big) < 4 * 2**20
    response = post(platform, f"/v1/pipelines/{pipeline_id}/events", big,
                    {"content-type": "application/x-ndjson", "dash-signature": signature_header(secret, big)})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["where"] == "limits.queue_bytes"
    assert platform.client.ingest(pipeline_id, [{"n": i} for i in range(100)], secret=secret).last_seq == 100


def test_the_202_lists_the_first_100_rejections_and_counts_them_all(platform) -> None:
    pipeline_id, secret = deploy(platform, "rejects")
    body = orjson.dumps([{"n": 0}] + [i for i in range(1, 501)])
    response = post(platform, f"/v1/pipelines/{pipeline_id}/events", body,
                    {"dash-signature": signature_header(secret, body)})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 1 and answer["last_seq"] == 501 and answer["rejected_count"] == 500
    assert [r["index"] for r in answer["rejected"]] == list(range(1, 101))


# -- provider schemes, signed here with hmac/hashlib as each provider documents --------------


def _mac(key: bytes, message: bytes) -> hmac.HMAC:
    return hmac.new(key, message, hashlib.sha256)


def _standard_key(secret: str) -> bytes:
    # Standard Webhooks: the key is the base64 after `whsec_`; ours is url-safe and unpadded.
    rest = secret.removeprefix("whsec_")
    return base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4))


def signed_headers(scheme: str, secret: str, body: bytes, *, t: int, delivery: str) -> dict[str, str]:
    if scheme == "stripe":
        return {"stripe-signature": f"t={t},v1={_mac(secret.encode(), f'{t}.'.encode() + body).hexdigest()}"}
    if scheme == "slack":
        return {"x-slack-request-timestamp": str(t),
                "x-slack-signature": "v0=" + _mac(secret.encode(), f"v0:{t}:".encode() + body).hexdigest()}
    if scheme == "shopify":
        return {"x-shopify-hmac-sha256": base64.b64encode(_mac(secret.encode(), body).digest()).decode(),
                "x-shopify-webhook-id": delivery}
    assert scheme == "standard"
    signature = base64.b64encode(_mac(_standard_key(secret), f"{delivery}.{t}.".encode() + body).digest())
    return {"webhook-id": delivery, "webhook-timestamp": str(t), "webhook-signature": f"v1,{signature.decode()}"}


@pytest.mark.parametrize("scheme", ["stripe", "slack", "shopify", "standard"])
def test_provider_webhooks_are_verified_and_deduplicated(platform, scheme) -> None:
    pipeline_id, secret = deploy(platform, scheme, source={"kind": "webhook", "verify": scheme})
    path = f"/v1/hooks/{pipeline_id}"
    body = orjson.dumps({"n": 1})
    now = int(time.time())
    first = post(platform, path, body, signed_headers(scheme, secret, body, t=now, delivery="msg_1"))
    assert first.status_code == 202, first.text
    replayed = post(platform, path, body, signed_headers(scheme, secret, body, t=now, delivery="msg_1"))
    assert replayed.status_code == 202 and replayed.json()["duplicate"] is True
    wrong = post(platform, path, body, signed_headers(scheme, "whsec_" + "A" * 43, body, t=now, delivery="msg_2"))
    assert wrong.status_code == 401, wrong.text
    if scheme != "shopify":  # the others are timestamped: 300 s either way
        stale = post(platform, path, body, signed_headers(scheme, secret, body, t=now - 400, delivery="msg_3"))
        assert stale.status_code == 401 and "window" in stale.json()["error"]["message"]
    new = platform.client.rotate_secret(pipeline_id, grace_s=600)
    for n, key in ((2, secret), (3, new)):
        other = orjson.dumps({"n": n})
        response = post(platform, path, other, signed_headers(scheme, key, other, t=now, delivery=f"msg_{n}0"))
        assert response.status_code == 202 and response.json()["last_seq"] == n, response.text
    assert [r["data"]["n"] for r in platform.client.records(pipeline_id)] == [1, 2, 3]


def test_a_fed_pipeline_takes_no_requests_and_its_feeder_runs(platform) -> None:
    """A demo pipeline's source feeds it from inside the actor: both ingest routes answer 404
    even for a well-signed request, while the generated readings arrive."""
    pipeline_id, secret = deploy(platform, "fed", source={"kind": "demo", "rate": 20, "devices": 2})
    body = orjson.dumps({"n": 1})
    pushed = post(platform, f"/v1/pipelines/{pipeline_id}/events", body,
                  {"dash-signature": signature_header(secret, body)})
    assert pushed.status_code == 404
    assert pushed.json()["error"]["message"] == f"pipeline {pipeline_id} takes no pushed events; its source is demo"
    hooked = post(platform, f"/v1/hooks/{pipeline_id}", body, {"dash-signature": signature_header(secret, body)})
    assert hooked.status_code == 404
    assert hooked.json()["error"]["message"] == f"pipeline {pipeline_id} takes no webhooks"
    platform.wait_for(lambda: len(platform.client.records(pipeline_id)) >= 3, timeout=30, what="demo readings")
