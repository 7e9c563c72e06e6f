"""Apply a compiled mapping (`compiler.py` builds it) to Arrow batches of raw records, live
or in replay.

Each record goes through, in order: JSON parsing (rule "json": not RFC 8259 JSON, as orjson
reads it, the same parser ingest uses; rule "object": JSON but not an object), the path
fields in declaration order (each checks "required", then casts: rule "type"), the expr
fields in order (a failed cast of the result: rule "type"), the filter (false or null drops
the record, counted in `filtered`), then the validate rules in order. The first failure
dead-letters the record; there is one dead row per failing record.

Decisions where the API leaves room:
- `default` applies when the value is missing or null, for path and expr fields alike; a
  field may not be both required and defaulted (its default would never be used).
- `time`: the declared field when it is not null, else `received_at`. Expressions, the
  filter and rules that name `time` see that final value.
- `extra` (keep_extra): a JSON object of the top-level keys no path reads (a path's first
  key; `$`, `$[*]` and `$.*` read them all), or null when there are none. With no fields
  at all, `extra` is the record's JSON text exactly as received.
- JSON text is written by orjson, which stops at 255 levels of nesting (it reads 1024): a
  json field, or `extra`, that would nest deeper fails with rule "type" (checked after the
  path fields).
- Numbers beyond 64-bit integers are read as doubles (orjson), so json/extra text may show
  them rounded; an object with a repeated key keeps the last value.

`apply` depends only on each record and the compiled spec: no clock, no randomness, no
state between calls, so mapping a batch whole or in pieces gives the same rows and dead
letters, and calling it from several threads at once is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from dash_ray.mapping.casts import ARROW_TYPES, cast_parsed, cast_result, json_bytes
from dash_ray.mapping.deadletters import DEAD_LETTER_SCHEMA, Verdicts, cast_detail, required_detail, value_detail
from dash_ray.mapping.paths import ALL_KEYS, Extractor, JsonPath
from dash_ray.mapping.raw import batch_columns, collector_paused, parse_records
from dash_ray.mapping.rules import Check
from dash_ray.mapping.timestamps import TIMESTAMP
from dash_ray.mapping.values import Evaluator, true_mask
from dash_ray.spec import FieldSpec, MappingSpec

__all__ = ["CompiledField", "CompiledMapping", "MappingResult"]

_CHUNK = 2048


@dataclass(frozen=True)
class MappingResult:
    """What one batch became: mapped rows (input order), dead letters, and how many records
    the filter dropped. Every input seq is in exactly one of the three."""

    rows: pa.Table
    dead: pa.Table
    filtered: int


@dataclass(frozen=True)
class CompiledField:
    """One field, checked: its path or compiled expression, the type the expression gives,
    and its default as an Arrow scalar."""

    name: str
    spec: FieldSpec
    path: JsonPath | None = None
    evaluate: Evaluator | None = None
    expr_type: str | None = None
    default: pa.Scalar | None = None

    def cast(self, values: list[Any]) -> tuple[pa.Array, np.ndarray | None]:
        s = self.spec
        return cast_parsed(values, s.type, unit=s.unit, fmt=s.format, timezone=s.timezone)

    def cast_result(self, result: pa.Array) -> tuple[pa.Array, np.ndarray | None, list[Any] | None]:
        s = self.spec
        assert self.expr_type is not None, "a path field has no expression result"
        return cast_result(result, self.expr_type, s.type, unit=s.unit, fmt=s.format, timezone=s.timezone)

    def cast_failure(self, values: list[Any]) -> Any:
        s = self.spec
        return cast_detail(values, s.type, unit=s.unit, fmt=s.format, expr_type=self.expr_type)


class CompiledMapping:
    """A mapping ready to apply. Build it with `compile_mapping`."""

    def __init__(self, spec: MappingSpec, fields: list[CompiledField], filter_: Evaluator | None,
                 checks: list[Check]) -> None:
        self.spec = spec
        self._fields = fields
        self._path_fields = [(f, f.path) for f in fields if f.path is not None]
        self._expr_fields = [(f, f.evaluate) for f in fields if f.evaluate is not None]
        self._extract = Extractor([path for _, path in self._path_fields])
        self._filter = filter_
        self._checks = checks
        self._passthrough = not fields
        self._types = {f.name: f.spec.type for f in fields}
        self._keep_extra = spec.keep_extra or self._passthrough
        top_keys = {path.top_key for _, path in self._path_fields}
        self._reads_all = ALL_KEYS in top_keys
        self._read_keys = frozenset(k for k in top_keys if k is not None)
        out = [pa.field("seq", pa.int64()), pa.field("time", TIMESTAMP)]
        out += [pa.field(f.name, ARROW_TYPES[f.spec.type]) for f in fields if f.name != "time"]
        if self._keep_extra:
            out.append(pa.field("extra", pa.string()))
        self.schema = pa.schema(out)

    def __repr__(self) -> str:
        return f"CompiledMapping({', '.join(self.schema.names)})"

    def apply(self, batch: pa.Table) -> MappingResult:
        """Map a batch with columns seq (int64), received_at (timestamp[us, UTC]) and raw (string).

        Guaranteed: every record ends in exactly one of rows, dead or filtered; rows and dead
        keep the input order; the result depends only on each record (the same for the batch
        whole or split, on every run, live or in replay); no exception for any record content;
        safe to call from several threads. A batch without those columns is a programming
        error (ValueError). Nothing is stored: the caller owns durability."""
        seq, received, raw = batch_columns(batch)
        n = len(seq)
        if n == 0:
            return MappingResult(self.schema.empty_table(), DEAD_LETTER_SCHEMA.empty_table(), 0)
        with collector_paused():
            if n <= _CHUNK:
                return self._apply(seq, received, raw)
            # Past a few thousand records the parsed objects outgrow the CPU caches; pieces are
            # faster, and (the mapping being batch-invariant) give the same result.
            parts = [self._apply(seq.slice(at, _CHUNK), received.slice(at, _CHUNK), raw.slice(at, _CHUNK))
                     for at in range(0, n, _CHUNK)]
        return MappingResult(
            pa.concat_tables([p.rows for p in parts]),
            pa.concat_tables([p.dead for p in parts]),
            sum(p.filtered for p in parts),
        )

    def _apply(self, seq: pa.Array, received: pa.Array, raw: pa.Array) -> MappingResult:
        n = len(seq)
        verdicts = Verdicts(n)
        # Bytes, not str: cheaper to make, and orjson then checks the UTF-8 itself (an Arrow
        # string array built from raw buffers may hold invalid UTF-8; str() would raise). A
        # view, not a cast: the two types share one layout, so no kernel needs to run.
        docs = parse_records(raw.view(pa.binary()).to_pylist(), verdicts)
        columns: dict[str, pa.Array] = {"received_at": received}
        for (f, path), values in zip(self._path_fields, self._extract(docs), strict=True):
            array, failed = f.cast(values)
            if f.spec.required and array.null_count:
                missing = array.is_null().to_numpy(zero_copy_only=False)
                if failed is not None:
                    missing &= ~failed
                verdicts.fail(missing, "required", f.name, required_detail(f.name, path.text))
            if failed is not None:
                verdicts.fail(failed, "type", f.name, f.cast_failure(values))
            self._store(columns, f, array)
        extra = None
        if self._keep_extra:
            extra = raw if self._passthrough else self._extra(docs, verdicts)
        for f, evaluate in self._expr_fields:
            array, failed, results = f.cast_result(evaluate(columns, n))
            if failed is not None and results is not None:  # the values cast come with a failure
                verdicts.fail(failed, "type", f.name, f.cast_failure(results))
            self._store(columns, f, array)
        if self._filter is not None:
            verdicts.drop(true_mask(self._filter(columns, n)))
        for check in self._checks:
            column = columns[check.field]
            detail = value_detail(column, self._types[check.field], check.reason)
            verdicts.fail(check.failing(column), check.rule, check.field, detail)
        rows = self._rows(seq, columns, extra, verdicts.kept)
        return MappingResult(rows, verdicts.dead(seq, received, raw), verdicts.filtered)

    def _store(self, columns: dict[str, pa.Array], f: CompiledField, array: pa.Array) -> None:
        # fill_null is a kernel call: skipped when there is no null to fill.
        if f.default is not None and array.null_count:
            array = array.fill_null(f.default)
        if f.name == "time" and array.null_count:
            array = array.fill_null(columns["received_at"])
        columns[f.name] = array

    def _rows(self, seq: pa.Array, columns: dict[str, pa.Array], extra: pa.Array | None,
              kept: np.ndarray) -> pa.Table:
        arrays = [seq, columns.get("time", columns["received_at"])]
        arrays += [columns[f.name] for f in self._fields if f.name != "time"]
        if extra is not None:
            arrays.append(extra)
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        return table if len(kept) == len(seq) else table.take(kept)

    def _extra(self, docs: list[dict[str, Any]], verdicts: Verdicts) -> pa.Array:
        if self._reads_all:
            return pa.nulls(len(docs), pa.string())
        read = self._read_keys
        unread = [None if d.keys() <= read else {k: v for k, v in d.items() if k not in read} for d in docs]
        try:
            return pa.array([None if u is None else orjson.dumps(u) for u in unread], pa.string())
        except orjson.JSONEncodeError:
            out = [None if u is None else json_bytes(u) for u in unread]
        failed = np.array([u is not None and o is None for u, o in zip(unread, out, strict=True)], dtype=bool)
        reason = "the unmapped keys nest more than 255 levels deep; JSON text cannot hold them"
        verdicts.fail(failed, "type", "extra", lambda i: (None, reason))
        return pa.array(out, pa.string())
