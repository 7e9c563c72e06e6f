"""What crosses from the ingress to a pipeline actor and back: a raw batch and its ack.

A `RawBatch` holds the records of one HTTP request as NDJSON (one compact JSON value per
line, each line ending in a newline), so the pipeline can log, map and store them without
re-encoding. Records that are valid JSON but not objects travel with the batch (they get a
sequence number and are dead-lettered by the mapping, so replay reproduces the same outcome);
`rejected` tells the client which ones and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Ack", "RawBatch", "Rejection"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the ingress already knows will be dead-lettered: its index in the request."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class RawBatch:
    """The records of one request. `payload` is `count` newline-terminated JSON lines."""

    payload: bytes
    count: int
    received_at_us: int
    idempotency_key: str | None = None
    rejected: tuple[Rejection, ...] = field(default=())
    # Set by the ingress from the request's signature or the provider's delivery id, so a
    # replayed request is a duplicate even when a client-chosen Idempotency-Key differs.
    replay_key: str | None = None

    @property
    def nbytes(self) -> int:
        return len(self.payload)

    @property
    def dedupe_keys(self) -> tuple[str, ...]:
        """Every key under which this request counts once."""
        return tuple(k for k in (self.idempotency_key, self.replay_key) if k)


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to one durable batch: sequence numbers `first_seq..last_seq` were given to
    its records. `duplicate` is true when an earlier request with the same idempotency key
    was stored and this one was not."""

    accepted: int
    first_seq: int
    last_seq: int
    rejected: tuple[Rejection, ...] = ()
    duplicate: bool = False

    def to_body(self) -> dict:
        body: dict = {"accepted": self.accepted, "last_seq": self.last_seq}
        if self.rejected:
            body["rejected"] = [{"index": r.index, "reason": r.reason} for r in self.rejected]
        if self.duplicate:
            body["duplicate"] = True
        return body
