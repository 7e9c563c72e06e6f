"""What a source provides, by how its records arrive: a `Receiver` takes them from requests
on an ingest route (what a web replica needs), a `Feeder` fetches or makes them inside the
pipeline actor (what the actor runs).

A source is built from the `source` block of a spec by the registry (`registry.py`), the one
place that looks at `kind`; each kind is a receiver or a feeder, never both. A feeder sends
its records through the pipeline's own durable ingest, the path a push takes, so they are
acknowledged, mapped and stored alike.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from dash_ray.ingest.batch import RawBatch
from dash_ray.ingest.signing import Scheme

__all__ = ["FeedContext", "Feeder", "Ingest", "Receiver", "Route", "iso_utc"]

Route = Literal["events", "hooks"]
# The pipeline's own ingest: store batches durably, answer each with its Ack or error.
Ingest = Callable[[list[RawBatch]], Awaitable[list[Any]]]


class Receiver(Protocol):
    """Takes a pipeline's records from requests. `route` is the ingest route it answers
    (`events` for `POST /v1/pipelines/{id}/events`, `hooks` for `POST /v1/hooks/{id}`);
    `scheme` is how a request's signature is checked (`dash_ray.ingest.signing`)."""

    # Read-only, so a frozen dataclass is a Receiver.
    @property
    def route(self) -> Route: ...

    @property
    def scheme(self) -> Scheme: ...

    @property
    def idempotency_header(self) -> str | None:
        """A header (lower-case) whose value is the request's idempotency key when it carries
        no `Idempotency-Key`: a provider's unsigned delivery id (`x-github-delivery`), or None."""
        ...

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


@dataclass(frozen=True)
class FeedContext:
    """What a feeder is given beside its `source` block, by the pipeline's process.

    `secrets`: the values of the named secrets the pipeline's spec refers to (`{"secret":
    name}` in the spec; `dash_ray.spec.SecretRef`), by name. `state_dir`: a folder of this
    pipeline's own that survives restarts of its process (beside its write-ahead log; gone
    with `delete --purge`), for what a feeder must keep durably (a cursor, keys seen)."""

    pipeline_id: str
    state_dir: Path
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    clock: Callable[[], float] = time.time
    # How to reach another pipeline by id, for a `pipeline` source (`dash_ray.sources.follow.Upstream`).
    upstream: Callable[[str], Any] | None = None


class Feeder(Protocol):
    """Brings a pipeline's records itself, inside the pipeline actor: generates them (the
    demo), polls an API, or follows another pipeline."""

    async def run(self, ingest: Ingest) -> None:
        """Feed records through `ingest` until cancelled. Stopping is cancelling the task
        that runs this; a feeder releases what it holds (a connection, a cursor to save) in
        its own `finally`. A batch `ingest` refuses is the feeder's to drop or retry, as its
        kind documents."""
        ...

    def state(self) -> dict[str, Any] | None:
        """What the pipeline's status shows as `source_state` (plain JSON data: for a poller
        its last poll, last success, last error, cursor, next poll), or None."""
        ...


def iso_utc(at: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds and a `Z` (for `source_state`)."""
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
