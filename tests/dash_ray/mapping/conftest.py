"""Helpers for the mapping tests: build input batches, compile specs, map records."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import orjson
import pyarrow as pa
import pytest

from dash_ray.errors import Problem, SpecError
from dash_ray.mapping import CompiledMapping, MappingResult, compile_mapping
from dash_ray.spec import MappingSpec

RECEIVED_US = 1_700_000_000_000_000
RECEIVED = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)
# Fields every expression test can use, read from a record like SAMPLE.
EXPR_FIELDS = {
    "i": {"path": "$.i", "type": "int"},
    "j": {"path": "$.j", "type": "int"},
    "x": {"path": "$.x", "type": "double"},
    "y": {"path": "$.y", "type": "double"},
    "s": {"path": "$.s", "type": "string"},
    "u": {"path": "$.u", "type": "string"},
    "b": {"path": "$.b", "type": "bool"},
    "t": {"path": "$.t", "type": "timestamp"},
    "js": {"path": "$.js", "type": "json"},
}
SAMPLE = {"i": 7, "j": 2, "x": 2.5, "y": -1.5, "s": "Hello", "u": "wörld", "b": True,
          "t": "2024-05-01T12:34:56.789Z", "js": {"k": [1, 2]}}


def make_batch(records: list[Any], *, first_seq: int = 1, received_us: int = RECEIVED_US) -> pa.Table:
    """An input batch; dicts and lists are written as JSON, strings are raw text as is."""
    raws = [r if r is None or isinstance(r, str) else orjson.dumps(r).decode() for r in records]
    n = len(raws)
    return pa.table({
        "seq": pa.array(range(first_seq, first_seq + n), pa.int64()),
        "received_at": pa.array([received_us] * n, pa.timestamp("us", tz="UTC")),
        "raw": pa.array(raws, pa.string()),
    })


def compile_spec(mapping: dict) -> CompiledMapping:
    return compile_mapping(MappingSpec.model_validate(mapping))


def run(mapping: dict | CompiledMapping, records: list[Any]) -> MappingResult:
    compiled = mapping if isinstance(mapping, CompiledMapping) else compile_spec(mapping)
    return compiled.apply(make_batch(records))


def problems(mapping: dict) -> list[Problem]:
    with pytest.raises(SpecError) as err:
        compile_spec(mapping)
    return list(err.value.problems)


def evaluate(expr: str, type_: str, record: dict | None = None, **field: Any) -> Any:
    """The value of one expr field of `type_` over EXPR_FIELDS read from `record`; a dead
    letter is returned as its dict."""
    spec = {"fields": {**EXPR_FIELDS, "out": {"expr": expr, "type": type_, **field}}}
    result = run(spec, [SAMPLE if record is None else record])
    if result.dead.num_rows:
        return result.dead.to_pylist()[0]
    return result.rows.column("out")[0].as_py()


@pytest.fixture(scope="session")
def mp() -> SimpleNamespace:
    return SimpleNamespace(batch=make_batch, compile=compile_spec, run=run, problems=problems,
                           evaluate=evaluate, EXPR_FIELDS=EXPR_FIELDS, SAMPLE=SAMPLE,
                           RECEIVED=RECEIVED, RECEIVED_US=RECEIVED_US)
