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
    # A header (lower-case) whose value is the request's idempotency key when it carries no
    # `Idempotency-Key`: a provider's unsigned delivery id (`x-github-delivery`), or None.
    idempotency_header: str | None

    def precheck(self, headers: Mapping[str, str]) -> Any:
        """Refuse a request before its body is read when its headers alone show it cannot be
        authentic (no signature, a malformed one, or a timestamp outside the clock window):
        SignatureError. `headers` have lower-case names. Returns what the headers said, to be
        handed back to `verify` (so they are read once)."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str],
               checked: Any = None) -> str | None:
        """Check the request's signature over the raw body against any of `secrets`
        (SignatureError when none matches); `checked` is what `precheck` returned, if it was
        called. Returns the key that makes a replay of this request harmless (a signed
        delivery id, or a digest of the signed content; see `dash_ray.ingest.signing`), or
        None when the scheme has none."""
        ...

    async def run(self, ingest: Ingest) -> None:
        """Feed records through `ingest` until cancelled (active sources); a passive source
        returns at once."""
        ...
