"""The one place that looks at a source's `kind`: a table from each kind to how its source
is built, one for the kinds that receive requests and one for the kinds that feed records.
Everything else (the ingress, the gateway, the pipeline actor) holds a `Receiver` or a
`Feeder` and calls its methods. A new kind is a module with its class and one line here."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dash_ray.sources.base import FeedContext, Feeder, Receiver
from dash_ray.sources.demo import DemoFeed
from dash_ray.sources.follow import FollowFeed
from dash_ray.sources.graphql import GraphqlPollFeed
from dash_ray.sources.http_poll import HttpPollFeed
from dash_ray.sources.mqtt import MqttFeed
from dash_ray.sources.receiver import SignedReceiver

__all__ = ["FEEDERS", "RECEIVERS", "feeder_for", "receiver_for"]

RECEIVERS: dict[str, Callable[..., Receiver]] = {
    "push": SignedReceiver.for_push,
    "webhook": SignedReceiver.for_webhook,
}
FEEDERS: dict[str, Callable[[Any, FeedContext], Feeder]] = {
    "demo": DemoFeed.from_spec,
    "http_poll": HttpPollFeed.from_spec,
    "graphql_poll": GraphqlPollFeed.from_spec,
    "mqtt": MqttFeed.from_spec,
    "pipeline": FollowFeed.from_spec,
}


def receiver_for(spec_source: Any, *, clock: Callable[[], float] = time.time) -> Receiver | None:
    """The Receiver for the `source` block of a spec (a model from `dash_ray.spec`), or None
    when its kind takes no requests (a feeder's)."""
    factory = RECEIVERS.get(_known(spec_source.kind))
    return None if factory is None else factory(spec_source, clock=clock)


def feeder_for(spec_source: Any, context: FeedContext) -> Feeder | None:
    """The Feeder for the `source` block of a spec, or None when its kind takes requests
    instead (a receiver's)."""
    factory = FEEDERS.get(_known(spec_source.kind))
    return None if factory is None else factory(spec_source, context)


def _known(kind: str) -> str:
    if kind not in RECEIVERS and kind not in FEEDERS:
        raise ValueError(f"no source of kind {kind!r}; known: {', '.join([*RECEIVERS, *FEEDERS])}")
    return kind
