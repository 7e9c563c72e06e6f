"""The source registry is the one place that dispatches on a source's kind; every source kind
is a `Source` with what the ingress and the pipeline actor need."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from dash_ray.errors import SpecError
from dash_ray.ingest.batch import RawBatch
from dash_ray.sources.demo import DemoFeed
from dash_ray.sources.push import PushReceiver
from dash_ray.sources.registry import SOURCES, source_for
from dash_ray.sources.webhook import WebhookReceiver
from dash_ray.spec import parse_spec
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[3]


def source(block: dict) -> object:
    return source_for(parse_spec({"id": "p", "source": block}).source)


def test_every_kind_of_the_spec_has_a_source() -> None:
    from typing import get_args

    from dash_ray.spec import Source

    kinds = {model.model_fields["kind"].default for model in get_args(get_args(Source)[0])}
    assert kinds == set(SOURCES)


def test_each_kind_answers_its_route() -> None:
    push, hook, demo = source({"kind": "push"}), source({"kind": "webhook"}), source({"kind": "demo"})
    assert isinstance(push, PushReceiver) and push.route == "events"
    assert isinstance(hook, WebhookReceiver) and hook.route == "hooks"
    assert isinstance(demo, DemoFeed) and demo.route is None


@pytest.mark.parametrize("verify,header", [("github", "x-github-delivery"), ("shopify", "x-shopify-webhook-id"),
                                           ("stripe", None), ("standard", None)])
def test_unsigned_delivery_ids_become_the_idempotency_header(verify, header) -> None:
    assert source({"kind": "webhook", "verify": verify}).idempotency_header == header
    named = source({"kind": "webhook", "verify": verify, "idempotency_header": "X-Request-Id"})
    assert named.idempotency_header == "x-request-id"


def test_options_of_the_generic_scheme_are_refused_for_the_others() -> None:
    with pytest.raises(SpecError, match="apply only to verify 'hmac'"):
        parse_spec({"id": "p", "source": {"kind": "webhook", "verify": "github", "header": "X-Sig"}})
    hmac_source = source({"kind": "webhook", "verify": "hmac", "header": "X-Sig", "algorithm": "sha512",
                          "encoding": "base64", "prefix": "v="})
    scheme = hmac_source.scheme
    assert (scheme.header, scheme.algorithm, scheme.encoding, scheme.prefix) == ("X-Sig", "sha512", "base64", "v=")


async def test_passive_sources_return_and_the_demo_feeds_the_ingest() -> None:
    got: list[RawBatch] = []

    async def ingest(batches: list[RawBatch]) -> list:
        got.extend(batches)
        return []

    await source({"kind": "push"}).run(ingest)
    await source({"kind": "webhook"}).run(ingest)
    task = asyncio.ensure_future(source({"kind": "demo", "rate": 50, "devices": 2}).run(ingest))
    await until(lambda: sum(b.count for b in got) >= 5, what="five demo readings")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got and sum(b.count for b in got) >= 5


_KINDS = r"\b(PushSource|WebhookSource|DemoSource)\b"


def test_no_code_outside_the_registry_dispatches_on_the_kind_of_a_source() -> None:
    """`isinstance` on source models, or a comparison with a source's `kind`, belongs in
    `dash_ray/sources/registry.py` only."""
    found = []
    for folder in ("dash_ray", "serve_app", "actors"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "dash_ray" / "sources" / "registry.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if (re.search(r"isinstance\([^)]*" + _KINDS, line) or re.search(r"source\w*\.kind\s*(==|!=|in\b)", line)
                        or re.search(r"match\s+\S*source", line)):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_a_stored_webhook_spec_parses_again() -> None:
    spec = parse_spec({"id": "p", "source": {"kind": "webhook", "verify": "standard"}})
    assert parse_spec(spec.to_json_dict()).source == spec.source
