"""The one place that looks at a source's `kind`: the table from kind to the class that
implements it. Everything else (the ingress, the gateway, the pipeline actor) holds a
`Source` and calls its methods."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dash_ray.sources.base import Source
from dash_ray.sources.demo import DemoFeed
from dash_ray.sources.push import PushReceiver
from dash_ray.sources.webhook import WebhookReceiver

__all__ = ["SOURCES", "source_for"]

SOURCES: dict[str, Callable[..., Source]] = {
    "push": PushReceiver.from_spec,
    "webhook": WebhookReceiver.from_spec,
    "demo": DemoFeed.from_spec,
}


def source_for(spec_source: Any, *, clock: Callable[[], float] = time.time) -> Source:
    """The Source for the `source` block of a spec (a model from `dash_ray.spec`)."""
    try:
        factory = SOURCES[spec_source.kind]
    except KeyError:
        raise ValueError(f"no source of kind {spec_source.kind!r}; known: {', '.join(SOURCES)}") from None
    return factory(spec_source, clock=clock)
