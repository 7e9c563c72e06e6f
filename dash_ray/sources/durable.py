"""What the feeders that must not lose or double a batch share (`mqtt`, `pipeline`): storing a
batch until the pipeline has taken it durably, and a batch written down (in a feeder's state
file, before its append) so a restart can append it again under its idempotency key."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dash_ray.errors import DashError, RetryableError
from dash_ray.ingest.batch import Ack, RawBatch, Rejections
from dash_ray.sources.base import Ingest

__all__ = ["append_until_stored", "batch_from_json", "batch_to_json", "write_atomically", "write_lines_atomically"]

_MAX_BACKOFF_S = 10.0


async def append_until_stored(ingest: Ingest, batch: RawBatch, refused: Callable[[str], None]) -> Ack:
    """Send `batch` through `ingest` until it is stored durably, and return its Ack (a
    duplicate's, when an earlier append under its key was stored). A refusal (a full queue,
    storage down, a restart) is told to `refused` and retried after its `retry_after`, else a
    doubling back-off up to 10 s."""
    backoff = 0.5
    while True:
        try:
            [answer] = await ingest([batch])
        except DashError as exc:
            answer = exc
        if isinstance(answer, Ack):
            return answer
        refused(f"{type(answer).__name__}: {answer}")
        await asyncio.sleep(answer.retry_after if isinstance(answer, RetryableError) and answer.retry_after
                            else backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF_S)


def batch_to_json(batch: RawBatch) -> dict[str, Any]:
    return {"key": batch.idempotency_key, "payload": base64.b64encode(batch.payload).decode(),
            "count": batch.count, "received_at_us": batch.received_at_us, "rejected": batch.rejected.to_json()}


def batch_from_json(data: dict[str, Any]) -> RawBatch:
    return RawBatch(payload=base64.b64decode(data["payload"]), count=int(data["count"]),
                    received_at_us=int(data["received_at_us"]), idempotency_key=str(data["key"]),
                    rejected=Rejections.from_json(data.get("rejected", [])))


def write_atomically(path: Path, data: Any) -> None:
    """`data` as JSON in `path`, replaced whole (a reader never sees half of it); not fsynced."""
    write_lines_atomically(path, [orjson.dumps(data)])


def write_lines_atomically(path: Path, lines: list[bytes]) -> None:
    """`lines` (each ending as it should) as the whole of `path`, replaced at once; not fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_bytes(b"".join(lines))
    os.replace(temp, path)
