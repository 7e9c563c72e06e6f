"""The query engines of one process (a web replica), by pipeline: DuckDB over the pipeline's
lake always, and PostgreSQL beside it when the pipeline keeps its silver there (the spec says
`postgres`, or says nothing on a platform with a database: `silver.choice.uses_postgres`, the
rule the pipeline's own follower obeys). Which of the two answers a query is
`dash_ray.query.stores`.

An engine is made on a pipeline's first query and kept for the next ones while the spec stays
the same; a changed spec gets new engines. At most `max_pipelines` pipelines' engines are kept:
past that the quarter made first are closed. Every query stops past `timeout_s` on either engine
(QueryLimitError). Thread-safe: queries run in several threads of the process at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from dash_ray.lake import Lake
from dash_ray.lake_roots import pipeline_lake
from dash_ray.query.dead import dead_letters
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.query.postgres import PostgresEngine
from dash_ray.query.stores import Answered, answer
from dash_ray.silver.choice import uses_postgres
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import PipelineSpec

__all__ = ["PipelineEngines", "QueryEngines"]


@dataclass(frozen=True)
class PipelineEngines:
    """One pipeline's engines, made for one version of its spec."""

    spec_json: str
    lake: DuckDBEngine
    postgres: PostgresEngine | None

    def close(self) -> None:
        self.lake.close()
        if self.postgres is not None:
            self.postgres.close()


class QueryEngines:
    """The engines of one process, by pipeline; rebuilt when a pipeline's spec changes."""

    def __init__(self, *, lake_url: str, lake_options: dict[str, Any] | None = None, pg_dsn: str | None = None,
                 timeout_s: float = 15.0, max_pipelines: int = 256) -> None:
        self.lake_url, self.lake_options = lake_url, lake_options
        self.pg_dsn = pg_dsn
        self.timeout_s = timeout_s
        self.max_pipelines = max_pipelines
        self._engines: dict[str, PipelineEngines] = {}
        self._lock = threading.Lock()

    def lake(self, spec: PipelineSpec) -> Lake:
        """The pipeline's lake (its own, or the platform's)."""
        return pipeline_lake(spec, lake_url=self.lake_url, lake_options=self.lake_options)

    def for_spec(self, spec: PipelineSpec) -> PipelineEngines:
        """The pipeline's engines for this spec, made when there are none for it yet."""
        with self._lock:
            key = spec.model_dump_json()
            cached = self._engines.get(spec.id)
            if cached is not None and cached.spec_json == key:
                return cached
            if cached is not None:
                self._engines.pop(spec.id).close()
            if len(self._engines) >= self.max_pipelines:
                dropped = list(self._engines)[: self.max_pipelines // 4]
                for pipeline_id in dropped:
                    self._engines.pop(pipeline_id).close()
            plan = spec_plan(spec)
            duck = DuckDBEngine(self.lake(spec), spec.id, plan=plan, timeout_s=self.timeout_s)
            pg = (PostgresEngine(self.pg_dsn, spec.id, plan=plan, timeout_s=self.timeout_s)
                  if self.pg_dsn and uses_postgres(spec, has_dsn=True) else None)
            made = self._engines[spec.id] = PipelineEngines(key, duck, pg)
        return made

    def run(self, spec: PipelineSpec, params: dict[str, str]) -> Answered:
        """The answer to the query `params` ask (`dash_ray.query.model`) and the store that
        made it. Raises QueryError for a bad query, QueryLimitError past the time limit,
        StorageError when no store can answer. Blocking: call it in a thread."""
        query = parse_query(params, spec_schema(spec))
        engines = self.for_spec(spec)
        return answer(query, engines.lake, engines.postgres)

    def stored_after(self, spec: PipelineSpec, after: int, *, limit: int) -> tuple[list[dict[str, Any]], int, int]:
        """Stored records after a seq, for a live client catching up: (records, the seq read
        up to, the first seq it can answer for; `DuckDBEngine.records_after`). From the
        lake's silver, which every stored row reaches first. Blocking."""
        return self.for_spec(spec).lake.records_after(after, spec_schema(spec).columns, limit=limit)

    def dead_letters(self, spec: PipelineSpec, limit: int) -> list[dict[str, Any]]:
        """The pipeline's newest dead letters, newest first (`dash_ray.query.dead`). Blocking."""
        return dead_letters(self.lake(spec), spec.id, limit)

    def close(self) -> None:
        """Close every engine. Idempotent."""
        with self._lock:
            for engines in self._engines.values():
                engines.close()
            self._engines.clear()
