"""What every source kind provides, whatever brings its records: the `Source` Protocol.

A source is built from the `source` block of a spec by the registry (`registry.py`), the one
place that looks at `kind`. Passive sources (push, webhook) take requests on an ingest route
and say how a request is authenticated; active sources (demo, and later polling and
pipeline-to-pipeline) run their own loop inside the pipeline actor and feed records through
the same durable ingest path as a push.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from dash_ray.ingest.batch import RawBatch

__all__ = ["Ingest", "Route", "Source"]

Route = Literal["events", "hooks"]
# The pipeline's own ingest: store batches durably, answer each with its Ack or error.
Ingest = Callable[[list[RawBatch]], Awaitable[list[Any]]]


class Source(Protocol):
    """One pipeline's source. `route` is the ingest route it answers (`events` for
    `POST /v1/pipelines/{id}/events`, `hooks` for `POST /v1/hooks/{id}`), or None for a
    source that takes no requests."""

    route: Route | None

    def precheck(self, headers: Mapping[str, str]) -> None:
        """Refuse a request before its body is read when its headers alone show it cannot be
        authentic (no signature, or a timestamp outside the clock window): SignatureError.
        `headers` have lower-case names."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> str | None:
        """Check the request's signature over the raw body against any of `secrets`
        (SignatureError when none matches). Returns the key that makes a replay of this
        request harmless (the provider's delivery id, or one derived from the signature),
        or None when the scheme has none."""
        ...

    async def run(self, ingest: Ingest) -> None:
        """Feed records through `ingest` until cancelled (active sources); a passive source
        returns at once."""
        ...
