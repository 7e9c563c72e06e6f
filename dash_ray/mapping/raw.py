"""The raw side of a mapping: a batch's columns checked and taken as they are, each raw
record parsed to a dict (rule "json": not JSON as orjson reads it; rule "object": JSON but
not an object), and Python's collector paused while a batch is mapped."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from dash_ray.mapping.deadletters import Verdicts
from dash_ray.mapping.timestamps import TIMESTAMP

__all__ = ["batch_columns", "collector_paused", "parse_records"]

_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch is mapped.

    Parsing makes thousands of short-lived dicts and lists per batch; they hold no cycles and
    reference counting frees them all before we return, so the collector has nothing to find
    in them. Left running, it scans them anyway and, as they survive into older generations,
    triggers full collections of the whole process: measured at 1,000-record batches, 17% of
    the time and p99 latency of 25 ms instead of 2 ms. The previous state is restored (a call
    that finds the collector already paused, e.g. by a concurrent call, leaves it to that one).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def batch_columns(batch: pa.Table) -> tuple[pa.Array, pa.Array, pa.Array]:
    """A batch's seq, received_at and raw as one array each; ValueError naming the columns
    a mapping batch has when it lacks one or it cannot be cast."""
    try:
        seq = _column(batch, "seq", pa.int64())
        received = _column(batch, "received_at", TIMESTAMP)
        raw = _column(batch, "raw", pa.string())
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(
            "a mapping batch has columns seq (int64), received_at (timestamp[us, UTC]) and raw (string); "
            f"got {batch.schema.names}") from exc
    return seq, received, raw


def _column(batch: pa.Table, name: str, type_: pa.DataType) -> pa.Array:
    column = batch.column(name)
    # The usual batch has one chunk of the right type: use it as it is (combining chunks
    # copies them, the raw text included, and a cast to the same type is a kernel call).
    one = isinstance(column, pa.ChunkedArray) and column.num_chunks == 1
    array = column.chunk(0) if one else column.combine_chunks()
    return array if array.type == type_ else array.cast(type_)


_EMPTY: dict[str, Any] = {}


def parse_records(raws: list[bytes | None], verdicts: Verdicts) -> list[dict[str, Any]]:
    """Each raw record as a dict ({} for the ones that fail here: rule json or object)."""
    try:
        # orjson's stub takes no None; orjson refuses one with JSONDecodeError, handled below.
        docs = list(map(orjson.loads, raws))  # type: ignore[arg-type]
        errors: dict[int, str] = {}
    except orjson.JSONDecodeError:
        docs, errors = [], {}
        for i, text in enumerate(raws):
            if text is None:
                docs.append(_EMPTY)
                errors[i] = "record is empty (null raw)"
                continue
            try:
                docs.append(orjson.loads(text))
            except orjson.JSONDecodeError as exc:
                docs.append(_EMPTY)
                errors[i] = f"record is not valid JSON: {exc}"
    if errors:
        verdicts.fail(_mask(len(docs), errors), "json", None, lambda i: (None, errors[i]))
    if set(map(type, docs)) != {dict}:
        kinds = {i: type(d) for i, d in enumerate(docs) if type(d) is not dict}
        verdicts.fail(_mask(len(docs), kinds), "object", None,
                      lambda i: (None, f"record is {_JSON_KINDS[kinds[i]]}, not a JSON object"))
        docs = [d if type(d) is dict else _EMPTY for d in docs]
    return docs


def _mask(n: int, indices: dict[int, Any]) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[list(indices)] = True
    return mask
