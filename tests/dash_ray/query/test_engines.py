"""A process's query engines by pipeline (`dash_ray.query.engines`), without Ray: which stores
a spec is queried in, engines kept per spec and bounded, and the answers they read from a
pipeline's real lake (a query, the live catch-up, the dead letters)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.engines import QueryEngines
from dash_ray.query.model import parse_query
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import PipelineSpec, parse_spec

FIELDS = {"time": {"path": "$.ts", "type": "timestamp"}, "temp_c": {"path": "$.temp", "type": "double"}}


def spec(pipeline_id: str = "eng", *, storage: dict[str, Any] | None = None, **changes: Any) -> PipelineSpec:
    return parse_spec({"id": pipeline_id, "mapping": {"fields": FIELDS, "validate": [{"field": "temp_c", "max": 60}]},
                       "storage": storage or {}, "flush": {"records": 100_000, "seconds": 3600}, **changes})


RECORDS = [{"ts": "2026-01-01T00:00:00Z", "temp": t} for t in (20.0, 99.0, 21.0)]


@pytest.fixture()
async def lake_url(tmp_path: Path) -> str:
    """A lake holding pipeline `eng`'s three records, the second one dead (too hot)."""
    core = PipelineCore(spec(), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    payload = b"".join(orjson.dumps(r) + b"\n" for r in RECORDS)
    await core.ingest([RawBatch(payload=payload, count=3, received_at_us=time.time_ns() // 1000)])
    assert await core.flush() == 3
    await core.close()
    return str(tmp_path / "lake")


@pytest.mark.parametrize(("silver", "with_dsn", "postgres"), [
    ("lake", True, False), ("postgres", True, True), (None, True, True), (None, False, False),
    ("postgres", False, False)])
def test_postgresql_is_queried_where_the_pipeline_keeps_its_silver(
        tmp_path: Path, pg_dsn: str, silver: str | None, with_dsn: bool, postgres: bool) -> None:
    engines = QueryEngines(lake_url=str(tmp_path / "lake"), pg_dsn=pg_dsn if with_dsn else None)
    try:
        made = engines.for_spec(spec(storage={"silver": silver} if silver else None))
        assert (made.postgres is not None) == postgres and made.lake.pipeline_id == "eng"
    finally:
        engines.close()


def test_engines_are_kept_per_spec_rebuilt_when_it_changes_and_bounded(lake_url: str, tmp_path: Path) -> None:
    engines = QueryEngines(lake_url=lake_url, max_pipelines=4)
    count = parse_query({"agg": "count"}, spec_schema(spec()))
    try:
        first = engines.for_spec(spec())
        assert engines.for_spec(spec()) is first and first.lake.run(count)["rows"] == [{"count": 2}]
        changed = engines.for_spec(spec(storage={"lake": str(tmp_path / "own")}))
        assert changed is not first and changed.lake.lake.url == f"file://{tmp_path / 'own'}"
        with pytest.raises(Exception, match="(?i)closed"):  # the replaced spec's engines are closed
            first.lake.run(count)
        others = [engines.for_spec(spec(f"p{i}")) for i in range(3)]
        assert engines.for_spec(spec("p0")) is others[0]
        engines.for_spec(spec("p3"))  # a fifth pipeline: the quarter made first (one) is closed
        assert [engines.for_spec(spec(f"p{i}")) for i in range(3)] == others
        assert engines.for_spec(spec(storage={"lake": str(tmp_path / "own")})) is not changed
    finally:
        engines.close()


def test_a_query_the_live_catch_up_and_the_dead_letters_read_the_pipelines_lake(lake_url: str) -> None:
    engines = QueryEngines(lake_url=lake_url)
    try:
        answered = engines.run(spec(), {"agg": "count"})
        assert (answered.store, answered.body["rows"], answered.stale) == ("lake", [{"count": 2}], None)
        stored, reached, first = engines.stored_after(spec(), 0, limit=10)
        assert [r["seq"] for r in stored] == [1, 3] and (reached, first) == (3, 1)
        [dead] = engines.dead_letters(spec(), 10)
        assert (dead["seq"], dead["field"], dead["rule"], dead["value"]) == (2, "temp_c", "max", "99.0")
        assert dead["record"] == RECORDS[1] and dead["received_at"].endswith("Z") and dead["reason"]
        assert engines.dead_letters(spec("nothing-here"), 10) == []
    finally:
        engines.close()
