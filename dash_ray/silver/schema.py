"""A pipeline's silver columns, as the stores that write them and the engines that query them
see them: `seq` and `time` on every row, one typed column per mapped field (spec order), and
`extra` (json) when the mapping keeps unmapped keys. Shared by every silver store and query
engine, so it lives with the writers, below the queries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from dash_ray.errors import Problem
from dash_ray.spec import PipelineSpec

__all__ = ["NUMERIC", "Column", "ColumnType", "Schema", "quote", "schema_of", "schema_problems", "spec_schema"]

ColumnType = Literal["string", "int", "double", "bool", "timestamp", "json"]
NUMERIC = frozenset({"int", "double"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType


@dataclass(frozen=True)
class Schema:
    """A pipeline's queryable columns besides `seq` and `time`, in spec order."""

    columns: tuple[Column, ...]

    def get(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


def spec_schema(spec: PipelineSpec) -> Schema:
    """The queryable columns of a pipeline's silver rows."""
    mapping = spec.mapping
    return schema_of({name: f.type for name, f in mapping.fields.items()}, keep_extra=mapping.keep_extra)


def schema_of(fields: Mapping[str, str], *, keep_extra: bool) -> Schema:
    """The schema of a mapping's rows: its fields but `time`, and `extra` when kept."""
    columns = [Column(name, type_) for name, type_ in fields.items() if name != "time"]  # type: ignore[arg-type]
    if keep_extra or not fields:
        columns.append(Column("extra", "json"))
    return Schema(tuple(columns))


def schema_problems(spec: PipelineSpec) -> list[Problem]:
    """Field names the stores cannot keep apart, for a 422 at deploy: DuckDB (which queries
    the lake) compares names without case, so two fields, or a field and a column every row
    has (`seq`, `time`, `extra`, `received_at`), may not differ only in case."""
    problems = []
    seen = {name: name for name in ("seq", "time", "extra", "received_at")}
    for name in spec.mapping.fields:
        other = seen.setdefault(name.lower(), name)
        if other != name:
            problems.append(Problem(f"mapping.fields.{name}", (
                f"field {name!r} differs from {other!r} only in case, and DuckDB, which queries the lake, "
                f"cannot tell them apart; rename one")))
    return problems


def quote(name: str) -> str:
    """A column's name as a quoted SQL identifier (DuckDB and PostgreSQL alike); anything but
    a plain identifier, as every field name is, is a bug (ValueError)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f'"{name}"'
