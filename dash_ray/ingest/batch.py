"""What crosses from the ingress to a pipeline actor and back: a raw batch and its ack.

A `RawBatch` holds the records of one HTTP request as NDJSON (one compact JSON value per
line, each line ending in a newline), so the pipeline can log, map and store them without
re-encoding. Records that are valid JSON but not objects travel with the batch (they get a
sequence number and are dead-lettered by the mapping, so replay reproduces the same outcome);
`rejected` tells the client which ones and why.

Rejections stay compact whatever their number (a body of `[1,1,1,...]` rejects every record):
a batch keeps them as runs of indices with one shared reason, and an ack keeps only the first
`SHOWN_REJECTIONS` of them; how many there were follows from the ack's own numbers.
"""

from __future__ import annotations

import base64
import itertools
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["NO_REJECTIONS", "SHOWN_REJECTIONS", "Ack", "RawBatch", "Rejection", "Rejections"]

# How many rejections an ack (and so the 202 body) lists; `rejected_count` has the total.
SHOWN_REJECTIONS = 100


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the ingress already knows will be dead-lettered: its index in the request."""

    index: int
    reason: str


def _runs_array(runs: bytes) -> array[int]:
    values = array("I")
    values.frombytes(runs)
    if sys.byteorder != "little":
        values.byteswap()
    return values


@dataclass(frozen=True, slots=True)
class Rejections:
    """The rejected records of one request: `runs` holds (start, stop) index pairs as
    little-endian uint32, ascending and disjoint; every one has `reason`. At most two ints
    per run, so a body cannot make this larger than itself. `len()` counts records;
    iterating yields a `Rejection` for each, in index order."""

    runs: bytes = b""
    count: int = 0
    reason: str = ""

    @classmethod
    def from_mask(cls, mask: np.ndarray, reason: str) -> Rejections:
        """The rejections marked true in a boolean array indexed like the records."""
        if not mask.any():
            return NO_REJECTIONS
        # Run edges are where the value changes (no int64 copy of the whole mask).
        edges = np.flatnonzero(mask[1:] != mask[:-1]) + 1
        head = [0] if mask[0] else []
        tail = [len(mask)] if mask[-1] else []
        runs = np.concatenate([np.asarray(head, dtype="<u4"), edges.astype("<u4"), np.asarray(tail, dtype="<u4")])
        return cls(runs.tobytes(), int(np.count_nonzero(mask)), reason)

    @classmethod
    def from_indices(cls, indices: np.ndarray, reason: str) -> Rejections:
        """From an ascending array of record indices."""
        if not len(indices):
            return NO_REJECTIONS
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        starts = np.concatenate([indices[:1], indices[breaks]]).astype("<u4")
        stops = (np.concatenate([indices[breaks - 1], indices[-1:]]) + 1).astype("<u4")
        return cls(np.column_stack([starts, stops]).tobytes(), len(indices), reason)

    @classmethod
    def of(cls, indices: Iterable[int], reason: str) -> Rejections:
        """From ascending record indices."""
        runs = array("I")
        count = 0
        for i in indices:
            if runs and runs[-1] == i:
                runs[-1] = i + 1
            else:
                runs.extend((i, i + 1))
            count += 1
        if not count:
            return NO_REJECTIONS
        if sys.byteorder != "little":
            runs.byteswap()
        return cls(runs.tobytes(), count, reason)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[Rejection]:
        values = _runs_array(self.runs)
        for k in range(0, len(values), 2):
            for i in range(values[k], values[k + 1]):
                yield Rejection(i, self.reason)

    def to_json(self) -> Any:
        """A compact JSON value for the log (`[]` when there are none)."""
        if not self.count:
            return []
        return {"reason": self.reason, "count": self.count, "runs": base64.b64encode(self.runs).decode()}

    @classmethod
    def from_json(cls, value: Any) -> Rejections:
        """Read `to_json`'s value back; also the `[[index, reason], ...]` of older log entries."""
        if isinstance(value, dict):
            return cls(base64.b64decode(value["runs"]), int(value["count"]), str(value["reason"]))
        if not value:
            return NO_REJECTIONS
        return cls.of((int(i) for i, _ in value), str(value[0][1]))


NO_REJECTIONS = Rejections()


@dataclass(frozen=True, slots=True)
class RawBatch:
    """The records of one request. `payload` is `count` newline-terminated JSON lines."""

    payload: bytes
    count: int
    received_at_us: int
    idempotency_key: str | None = None
    rejected: Rejections = field(default=NO_REJECTIONS)
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
    was stored and this one was not.

    `rejected` may be given as a batch's `Rejections` (or any iterable of Rejection); the ack
    keeps only the first `SHOWN_REJECTIONS`. Every record of a request gets a sequence number,
    and only rejected ones are not accepted, so `rejected_count` is the records less the
    accepted ones and survives the cut (and the idempotency index, which stores the ack)."""

    accepted: int
    first_seq: int
    last_seq: int
    rejected: tuple[Rejection, ...] | Rejections = ()  # a tuple once made (see __post_init__)
    duplicate: bool = False

    def __post_init__(self) -> None:
        rejected: Any = self.rejected
        if not rejected:
            if type(rejected) is not tuple:
                object.__setattr__(self, "rejected", ())
        elif type(rejected) is not tuple or len(rejected) > SHOWN_REJECTIONS:
            object.__setattr__(self, "rejected", tuple(itertools.islice(rejected, SHOWN_REJECTIONS)))

    @property
    def rejected_count(self) -> int:
        return max(len(self.rejected), self.last_seq - self.first_seq + 1 - self.accepted)

    def to_body(self) -> dict[str, Any]:
        """The 202 body: `rejected` lists the first SHOWN_REJECTIONS rejected records and
        `rejected_count` counts them all (both absent when there are none)."""
        body: dict[str, Any] = {"accepted": self.accepted, "last_seq": self.last_seq}
        if self.rejected:
            body["rejected"] = [{"index": r.index, "reason": r.reason} for r in self.rejected]
            body["rejected_count"] = self.rejected_count
        if self.duplicate:
            body["duplicate"] = True
        return body
