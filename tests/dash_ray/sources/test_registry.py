"""The source registry is the one place that dispatches on a source's kind; each kind is a
`Receiver` (what a web replica needs) or a `Feeder` (what the pipeline actor runs), never both
and never a stub of the other."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import pytest

from dash_ray.errors import SpecError
from dash_ray.ingest.batch import RawBatch
from dash_ray.sources import registry
from dash_ray.sources.base import FeedContext
from dash_ray.sources.demo import DemoFeed
from dash_ray.sources.receiver import SignedReceiver
from dash_ray.sources.registry import FEEDERS, RECEIVERS, feeder_for, receiver_for
from dash_ray.spec import parse_spec
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[3]


def spec_source(block: dict) -> object:
    return parse_spec({"id": "p", "source": block}).source


CONTEXT = FeedContext("p", Path("/nonexistent/state"))


def test_every_kind_of_the_spec_is_received_or_fed_not_both() -> None:
    from dash_ray.spec import Source

    kinds = {model.model_fields["kind"].default for model in get_args(get_args(Source)[0])}
    assert kinds == set(RECEIVERS) | set(FEEDERS)
    assert set(RECEIVERS).isdisjoint(FEEDERS)


def test_push_and_webhook_are_one_signed_receiver_on_their_routes() -> None:
    push, hook = receiver_for(spec_source({"kind": "push"})), receiver_for(spec_source({"kind": "webhook"}))
    assert type(push) is type(hook) is SignedReceiver
    assert (push.route, hook.route) == ("events", "hooks")
    assert feeder_for(spec_source({"kind": "push"}), CONTEXT) is None
    assert feeder_for(spec_source({"kind": "webhook"}), CONTEXT) is None


def test_the_demo_is_a_feeder_and_takes_no_requests() -> None:
    demo = spec_source({"kind": "demo", "rate": 3, "devices": 2})
    assert receiver_for(demo) is None
    feeder = feeder_for(demo, CONTEXT)
    assert isinstance(feeder, DemoFeed) and (feeder.rate, feeder.devices) == (3, 2)
    # The split itself: a feeder has nothing of a receiver, a receiver nothing of a feeder.
    assert not any(hasattr(feeder, name) for name in ("route", "precheck", "verify", "scheme"))
    assert not hasattr(receiver_for(spec_source({"kind": "push"})), "run")


def test_an_unknown_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"no source of kind 'carrier-pigeon'; known: push, webhook, demo"):
        receiver_for(SimpleNamespace(kind="carrier-pigeon"))
    with pytest.raises(ValueError, match=r"no source of kind 'carrier-pigeon'; known: push, webhook, demo"):
        feeder_for(SimpleNamespace(kind="carrier-pigeon"), CONTEXT)


def test_a_feeder_kind_is_one_entry_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    class Ticks:
        def __init__(self, spec: object, context: FeedContext) -> None:
            self.spec, self.clock = spec, context.clock

        async def run(self, ingest: object) -> None:
            return None

        def state(self) -> None:
            return None

    monkeypatch.setitem(registry.FEEDERS, "ticks", Ticks)
    block = SimpleNamespace(kind="ticks")
    feeder = feeder_for(block, FeedContext("p", Path("/x"), clock=time.monotonic))
    assert isinstance(feeder, Ticks) and feeder.spec is block and feeder.clock is time.monotonic
    assert receiver_for(block) is None


@pytest.mark.parametrize("verify,header", [("github", "x-github-delivery"), ("shopify", "x-shopify-webhook-id"),
                                           ("stripe", None), ("standard", None)])
def test_unsigned_delivery_ids_become_the_idempotency_header(verify, header) -> None:
    assert receiver_for(spec_source({"kind": "webhook", "verify": verify})).idempotency_header == header
    named = receiver_for(spec_source({"kind": "webhook", "verify": verify, "idempotency_header": "X-Request-Id"}))
    assert named.idempotency_header == "x-request-id"


def test_options_of_the_generic_scheme_are_refused_for_the_others() -> None:
    with pytest.raises(SpecError, match="apply only to verify 'hmac'"):
        parse_spec({"id": "p", "source": {"kind": "webhook", "verify": "github", "header": "X-Sig"}})
    receiver = receiver_for(spec_source({"kind": "webhook", "verify": "hmac", "header": "X-Sig",
                                         "algorithm": "sha512", "encoding": "base64", "prefix": "v="}))
    scheme = receiver.scheme
    assert (scheme.header, scheme.algorithm, scheme.encoding, scheme.prefix) == ("X-Sig", "sha512", "base64", "v=")


async def test_the_demo_feeds_the_ingest_until_cancelled() -> None:
    got: list[RawBatch] = []

    async def ingest(batches: list[RawBatch]) -> list:
        got.extend(batches)
        return []

    task = asyncio.ensure_future(
        feeder_for(spec_source({"kind": "demo", "rate": 50, "devices": 2}), CONTEXT).run(ingest))
    await until(lambda: sum(b.count for b in got) >= 5 or task.done(), what="five demo readings")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sum(b.count for b in got) >= 5


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
