"""What differs between the SQL that DuckDB and PostgreSQL run for the same query: one `Dialect`
per engine (`DUCKDB`, `POSTGRES`), so the builders (`sql.py`, `rollup_sql.py`) hold no switch
on an engine's name and a new engine brings its own.

Written once for both, not here: identifiers double-quoted (`dash_ray.silver.schema.quote`),
the epoch-aligned bucket `e - ((e % w) + w) % w` on integer microseconds, `CAST(... AS DOUBLE
PRECISION)` and `DECIMAL(38, 0)`, `count`, `sum`, `min` and `max` of all but booleans.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from dash_ray.silver.pgschema import PG_TYPES
from dash_ray.silver.schema import Column, quote

__all__ = ["DUCKDB", "POSTGRES", "Dialect"]


class Dialect(ABC):
    """One engine's SQL where it differs from the other's."""

    name: str

    @abstractmethod
    def text(self, sql: str) -> str:
        """`sql`, written with `?` placeholders, as the engine's driver takes it."""

    @abstractmethod
    def epoch_us(self, column: str = "time") -> str:
        """A timestamp column as integer epoch microseconds."""

    @property
    @abstractmethod
    def order_time(self) -> str:
        """The row's time as `first` and `last` order rows by it (before `seq`)."""

    @abstractmethod
    def sort_key(self, column: Column) -> str:
        """A field in ORDER BY; strings sort bytewise in every dialect."""

    @abstractmethod
    def avg(self, expr: str) -> str:
        """The mean of `expr`, a double."""

    @abstractmethod
    def extreme(self, fn: Literal["min", "max"], expr: str, column: Column) -> str:
        """The least or greatest value of `expr`, a field of `column`'s type."""

    @abstractmethod
    def first_last(self, fn: Literal["first", "last"], value: str, time: str, seq: str) -> str:
        """The earliest or latest non-null `value` by (`time`, `seq`)."""

    @abstractmethod
    def type_of(self, column: Column) -> str:
        """The SQL type of a column of `column`'s type (for a typed null)."""


class _DuckDB(Dialect):
    name = "duckdb"
    _TYPES = {"string": "VARCHAR", "int": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN",
              "timestamp": "TIMESTAMPTZ", "json": "VARCHAR"}

    def text(self, sql: str) -> str:
        return sql

    def epoch_us(self, column: str = "time") -> str:
        return f"epoch_us({column})"

    @property
    def order_time(self) -> str:
        return self.epoch_us()

    def sort_key(self, column: Column) -> str:
        return quote(column.name)  # DuckDB compares strings bytewise

    def avg(self, expr: str) -> str:
        return f"avg({expr})"

    def extreme(self, fn: Literal["min", "max"], expr: str, column: Column) -> str:
        return f"{fn}({expr})"

    def first_last(self, fn: Literal["first", "last"], value: str, time: str, seq: str) -> str:
        arg = "arg_min" if fn == "first" else "arg_max"
        return f"{arg}({value}, ({time}, {seq})) FILTER (WHERE {value} IS NOT NULL)"

    def type_of(self, column: Column) -> str:
        return self._TYPES[column.type]


class _Postgres(Dialect):
    name = "postgres"

    def text(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")  # psycopg's placeholders

    def epoch_us(self, column: str = "time") -> str:
        return f"(extract(epoch from {column}) * 1000000)::bigint"

    @property
    def order_time(self) -> str:
        return "time"

    def sort_key(self, column: Column) -> str:
        name = quote(column.name)
        return f'{name} COLLATE "C"' if column.type == "string" else name

    def avg(self, expr: str) -> str:
        return f"avg({expr})::double precision"  # numeric for an int field otherwise

    def extreme(self, fn: Literal["min", "max"], expr: str, column: Column) -> str:
        if column.type == "bool":  # PostgreSQL has no max(boolean)
            return f"{'bool_and' if fn == 'min' else 'bool_or'}({expr})"
        return f"{fn}({expr})"

    def first_last(self, fn: Literal["first", "last"], value: str, time: str, seq: str) -> str:
        direction = "" if fn == "first" else " DESC"
        ordered = f"array_agg({value} ORDER BY {time}{direction}, {seq}{direction})"
        return f"({ordered} FILTER (WHERE {value} IS NOT NULL))[1]"

    def type_of(self, column: Column) -> str:
        return PG_TYPES[column.type]


DUCKDB: Dialect = _DuckDB()
POSTGRES: Dialect = _Postgres()
