"""How a group of raw batches is written into the write-ahead log and read back, and how
logged records become the Arrow batch the mapping reads (`seq`, `received_at`, `raw`).

One entry holds the batches of one pipeline call, their records numbered consecutively from
`first_seq`. The entry's log key is its `last_seq`, so trimming the log through the last
sequence number in the lake drops exactly the entries already stored there.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.ingest.batch import RawBatch, Rejections

__all__ = ["BatchMeta", "LoggedEntry", "decode_entry", "encode_entry", "input_table", "INPUT_SCHEMA"]

_VERSION = 1
_HEAD = struct.Struct("<BI")
INPUT_SCHEMA = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("received_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("raw", pa.string(), nullable=False),
])


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """What the log keeps of one request besides its records."""

    count: int
    received_at_us: int
    idempotency_key: str | None
    rejected: Rejections
    replay_key: str | None = None

    @property
    def dedupe_keys(self) -> tuple[str, ...]:
        return tuple(k for k in (self.idempotency_key, self.replay_key) if k)


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    first_seq: int
    batches: tuple[BatchMeta, ...]
    payload: bytes
    # Derived once (they are read on every step of the path, summing the batches each time).
    count: int = field(init=False)
    last_seq: int = field(init=False)

    def __post_init__(self) -> None:
        count = sum(b.count for b in self.batches)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "last_seq", self.first_seq + count - 1)


def encode_entry(first_seq: int, batches: Sequence[RawBatch]) -> tuple[LoggedEntry, bytes]:
    """The entry for `batches` numbered from `first_seq`, and its bytes for the log."""
    metas = tuple(
        BatchMeta(b.count, b.received_at_us, b.idempotency_key, b.rejected, b.replay_key) for b in batches
    )
    payload = b"".join([b.payload for b in batches])
    header = orjson.dumps({
        "s": first_seq,
        "b": [
            [m.count, m.received_at_us, m.idempotency_key, m.rejected.to_json(), m.replay_key]
            for m in metas
        ],
    })
    entry = LoggedEntry(first_seq, metas, payload)
    return entry, _HEAD.pack(_VERSION, len(header)) + header + payload


def decode_entry(data: bytes) -> LoggedEntry:
    """Read back what `encode_entry` wrote (the log has already checked its checksum)."""
    version, header_len = _HEAD.unpack_from(data)
    if version != _VERSION:
        raise ValueError(f"unknown log entry version {version}")
    start = _HEAD.size
    header = orjson.loads(data[start:start + header_len])
    # Entries written before replay keys existed have four fields per batch, and before
    # compact rejections a list of [index, reason] pairs (Rejections.from_json reads both).
    metas = tuple(
        BatchMeta(b[0], b[1], b[2], Rejections.from_json(b[3]), b[4] if len(b) > 4 else None)
        for b in header["b"]
    )
    return LoggedEntry(header["s"], metas, data[start + header_len:])


def input_table(entries: Sequence[LoggedEntry]) -> pa.Table:
    """The mapping's input for consecutive entries: one row per record, in seq order.

    The raw column is built straight on the payload bytes (no per-record Python objects):
    newline positions become the string offsets, then the trailing newline is trimmed."""
    if not entries:
        return INPUT_SCHEMA.empty_table()
    payload = entries[0].payload if len(entries) == 1 else b"".join(e.payload for e in entries)
    buf = np.frombuffer(payload, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    n = len(ends)
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends + 1
    lines = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(payload))
    raw = pc.utf8_rtrim(lines, characters="\n").cast(pa.string())
    first = entries[0].first_seq
    seq = np.arange(first, first + n, dtype=np.int64)
    metas = [meta for e in entries for meta in e.batches]
    received = np.repeat(np.fromiter((m.received_at_us for m in metas), np.int64, len(metas)),
                         np.fromiter((m.count for m in metas), np.int64, len(metas)))
    if len(received) != n:
        raise ValueError(f"log entries hold {n} lines but their batches count {len(received)} records")
    return pa.Table.from_arrays(
        [pa.array(seq), pa.array(received).cast(pa.timestamp("us", tz="UTC")), raw], schema=INPUT_SCHEMA
    )
