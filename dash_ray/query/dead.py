"""A pipeline's newest dead letters as `GET /v1/pipelines/{id}/dead` shows them: newest first,
each with its seq, receive time (ISO 8601 UTC), the field, rule, value and reason that refused
it, and the record itself (parsed when it is JSON, else the text as received)."""

from __future__ import annotations

from typing import Any

import orjson

from dash_ray.lake import Lake
from dash_ray.query.model import iso

__all__ = ["dead_letters"]


def dead_letters(lake: Lake, pipeline_id: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` dead letters of the pipeline in `lake`, newest first. Blocking;
    raises StorageError when the lake cannot be read."""
    table = lake.tail("dead", pipeline_id, limit)
    if table is None:
        return []
    out = []
    for row in table.sort_by([("seq", "descending")]).to_pylist():
        raw = row.get("raw")
        try:
            record = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError:
            record = raw  # not JSON at all: shown as received
        received = row.get("received_at")
        out.append({"seq": row["seq"], "received_at": iso(int(received.timestamp() * 1_000_000)) if received else None,
                    "field": row.get("field"), "rule": row.get("rule"), "value": row.get("value"),
                    "reason": row.get("reason"), "record": record})
    return out
