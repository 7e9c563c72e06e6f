"""Where the catalog contract runs: SQLite (a file in tmp_path) and PostgreSQL (a schema of its
own per test in the session's database)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog import Catalog, open_catalog

T0 = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


class FakeClock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclasses.dataclass
class Place:
    """Where a test's catalog lives; opens it (again) and reads its tables raw."""

    backend: str
    url: str
    schema: str
    key: str

    def open(self, *, box: SecretBox | None = None, clock: Callable[[], dt.datetime] | None = None) -> Catalog:
        return open_catalog(self.url, box=box or SecretBox([self.key]), clock=clock, pg_schema=self.schema)

    def raw_rows(self, table: str) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            with sqlite3.connect(self.url) as conn:
                rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            conn.close()
            return rows
        with psycopg.connect(self.url) as conn:
            return conn.execute(f'SELECT * FROM "{self.schema}".{table}').fetchall()

    def raw_bytes(self) -> bytes:
        """Everything stored, as bytes: every table's rows and, for SQLite, the files too."""
        dump = repr([self.raw_rows(t) for t in ("pipelines", "pipeline_secrets", "tokens")]).encode()
        if self.backend == "sqlite":
            for path in Path(self.url).parent.glob(Path(self.url).name + "*"):
                dump += path.read_bytes()
        return dump


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    key = SecretBox.generate_key()
    if request.param == "sqlite":
        yield Place("sqlite", str(tmp_path / "home" / "catalog.sqlite"), "dash", key)
        return
    dsn = request.getfixturevalue("pg_dsn")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield Place("postgres", dsn, schema, key)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def catalog(place: Place, clock: FakeClock) -> Iterator[Catalog]:
    cat = place.open(clock=clock)
    yield cat
    cat.close()
