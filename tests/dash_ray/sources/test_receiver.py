"""The signed receiver checks a request as the ingress does on its hot path: its headers
before the body is read (`precheck`), then the signature over the body (`verify`), for a push
and for a webhook scheme."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from dash_ray.errors import SignatureError
from dash_ray.ingest.signing import signature_header
from dash_ray.sources.registry import receiver_for
from dash_ray.spec import parse_spec

SECRET = "s3cret"
BODY = b'{"n": 1}\n'


def receiver(block: dict, now: float = 1_700_000_000.0):
    return receiver_for(parse_spec({"id": "p", "source": block}).source, clock=lambda: now)


def test_a_signed_push_passes_and_names_its_replay_key() -> None:
    push = receiver({"kind": "push"})
    headers = {"dash-signature": signature_header(SECRET, BODY, timestamp=1_700_000_000)}
    checked = push.precheck(headers)
    key = push.verify(headers, BODY, ["old", SECRET], checked)
    assert key and key == push.verify(headers, BODY, [SECRET])  # the same request, the same key
    with pytest.raises(SignatureError):
        push.verify(headers, BODY + b" ", [SECRET], checked)
    with pytest.raises(SignatureError):
        push.verify(headers, BODY, ["other"], checked)


def test_a_push_outside_the_clock_window_is_refused_by_its_headers() -> None:
    push = receiver({"kind": "push"}, now=1_700_000_000.0 + 301)
    with pytest.raises(SignatureError):
        push.precheck({"dash-signature": signature_header(SECRET, BODY, timestamp=1_700_000_000)})
    with pytest.raises(SignatureError):
        push.precheck({})


def test_a_github_delivery_passes_with_its_scheme() -> None:
    hook = receiver({"kind": "webhook", "verify": "github"})
    headers = {"x-hub-signature-256": "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest(),
               "x-github-delivery": "d-1"}
    hook.verify(headers, BODY, [SECRET], hook.precheck(headers))
    with pytest.raises(SignatureError):
        hook.verify({**headers, "x-hub-signature-256": "sha256=" + "0" * 64}, BODY, [SECRET])
    assert hook.idempotency_header == "x-github-delivery"
