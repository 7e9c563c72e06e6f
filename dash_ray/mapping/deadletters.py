"""Which records of a batch fail, and the dead-letter row that says why.

Checks run in a fixed order and each record keeps the first failure it meets, so a failing
record has exactly one dead row: `{field, rule, value, reason}` next to its seq,
received_at and raw text. `value` is the offending value as JSON text (null when there is
none, as for a missing required field); `reason` is one readable sentence in which long
values are cut short (the `value` column keeps them whole).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from dash_ray.mapping.casts import json_bytes, json_text, result_values, show
from dash_ray.mapping.timestamps import TIMESTAMP

__all__ = ["DEAD_LETTER_SCHEMA", "NO_DEAD_LETTERS", "Detail", "Verdicts", "cast_detail", "internal_failure",
           "required_detail", "value_detail"]

DEAD_LETTER_SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("received_at", TIMESTAMP),
    ("raw", pa.string()),
    ("field", pa.string()),
    ("rule", pa.string()),
    ("value", pa.string()),
    ("reason", pa.string()),
])
# No dead letters. Tables are immutable, so every batch without any can share this one
# (making an empty table costs as much as a kernel call).
NO_DEAD_LETTERS = DEAD_LETTER_SCHEMA.empty_table()
# A failure's details for the record at an index: (value as JSON text or None, reason).
Detail = Callable[[int], tuple[str | None, str]]

_OPEN = 0
_FILTERED = -1


def internal_failure(batch: pa.Table, reason: str) -> pa.Table:
    """Dead letters for a whole input batch (seq, received_at, raw) that could not be mapped
    for a reason that is not the records' fault: rule `internal`, so they can be replayed once
    the cause is fixed."""
    n = batch.num_rows
    return pa.table({
        "seq": batch.column("seq"),
        "received_at": batch.column("received_at"),
        "raw": batch.column("raw"),
        "field": pa.nulls(n, pa.string()),
        "rule": pa.array(["internal"] * n, pa.string()),
        "value": pa.nulls(n, pa.string()),
        "reason": pa.array([reason] * n, pa.string()),
    }, schema=DEAD_LETTER_SCHEMA)


class Verdicts:
    """The fate of each record of one batch: kept (so far), filtered, or dead by a failure."""

    def __init__(self, n: int) -> None:
        self._status = np.zeros(n, dtype=np.int32)  # 0 open, -1 filtered, k > 0 failures[k-1]
        self._failures: list[tuple[str, str | None, Detail]] = []

    def fail(self, mask: np.ndarray | None, rule: str, field: str | None, detail: Detail) -> None:
        """Records in `mask` that are still open fail with `rule` on `field`."""
        if mask is None:
            return
        hit = mask & (self._status == _OPEN)
        if hit.any():
            self._failures.append((rule, field, detail))
            self._status[hit] = len(self._failures)

    def drop(self, keep: np.ndarray) -> None:
        """Records not in `keep` that are still open are filtered out."""
        self._status[~keep & (self._status == _OPEN)] = _FILTERED

    @property
    def kept(self) -> np.ndarray:
        """Indices of the records that passed everything, in input order."""
        return np.flatnonzero(self._status == _OPEN)

    @property
    def filtered(self) -> int:
        return int(np.count_nonzero(self._status == _FILTERED))

    def dead(self, seq: pa.Array, received: pa.Array, raw: pa.Array) -> pa.Table:
        """The dead-letter rows, in input order."""
        index = np.flatnonzero(self._status > 0)
        if not len(index):
            return NO_DEAD_LETTERS
        fields, rules, values, reasons = [], [], [], []
        for i in index.tolist():
            rule, field, detail = self._failures[self._status[i] - 1]
            value, reason = detail(i)
            fields.append(field)
            rules.append(rule)
            values.append(value)
            reasons.append(reason)
        take = pa.array(index)
        return pa.Table.from_arrays(
            [seq.take(take), received.take(take), _valid_text(raw.take(take)), pa.array(fields, pa.string()),
             pa.array(rules, pa.string()), pa.array(values, pa.string()), pa.array(reasons, pa.string())],
            schema=DEAD_LETTER_SCHEMA,
        )


def _valid_text(raw: pa.Array) -> pa.Array:
    """`raw` itself, or, when some of it is not UTF-8 (a broken input array), a copy in which
    the invalid bytes are replaced with U+FFFD, so the dead letters are a valid table."""
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        data = raw.cast(pa.binary()).to_pylist()
        return pa.array([None if b is None else b.decode("utf-8", "replace") for b in data], pa.string())
    return raw


def required_detail(name: str, where: str) -> Detail:
    return lambda i: (None, f"required field {json_text(name)} is missing or null at {where}")


def cast_detail(values: list[Any], type_: str, *, unit: str | None, fmt: str | None,
                expr_type: str | None = None) -> Detail:
    """Details of a failed cast of `values[i]` (JSON values) to `type_`."""
    hint = ""
    if type_ == "timestamp":
        hint = f" with format {json_text(fmt)}" if fmt else f" (ISO 8601 text or epoch {unit or 's'} numbers)"
    if expr_type is not None:
        hint += f" (from the expression's {expr_type} result)"
    def detail(i: int) -> tuple[str | None, str]:
        data = json_bytes(values[i])
        return (None if data is None else data.decode()), f"cannot cast {show(values[i])} to {type_}{hint}"

    return detail


def value_detail(column: pa.Array, type_: str, reason: Callable[[Any], str]) -> Detail:
    """Details of a rule failed by the value at an index of a mapped `column` of `type_`."""

    def detail(i: int) -> tuple[str | None, str]:
        value = result_values(column.slice(i, 1), type_)[0]
        return (None if value is None else json_text(value)), reason(value)

    return detail
