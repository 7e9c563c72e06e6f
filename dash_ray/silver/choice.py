"""Which silver stores a pipeline writes: always the lake's silver Parquet (the source of
truth, queried with DuckDB), and PostgreSQL beside it, kept caught up by a `SilverFollower`,
when the spec says `storage.silver: postgres`, or leaves it unset while the platform has a
database (DASH_PG_DSN). A spec asking for PostgreSQL on a platform without one is refused at
deploy (422, `storage.silver`)."""

from __future__ import annotations

from dash_ray.errors import Problem
from dash_ray.lake import Lake
from dash_ray.silver.follower import SilverFollower
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import PipelineSpec

__all__ = ["postgres_follower", "silver_problems", "uses_postgres"]


def uses_postgres(spec: PipelineSpec, *, has_dsn: bool) -> bool:
    """Whether the pipeline keeps its silver rows in PostgreSQL too."""
    choice = spec.storage.silver
    return choice == "postgres" or (choice is None and has_dsn)


def silver_problems(spec: PipelineSpec, *, has_dsn: bool) -> list[Problem]:
    """What is wrong with the spec's silver choice on this platform, for a 422 at deploy."""
    if spec.storage.silver == "postgres" and not has_dsn:
        return [Problem("storage.silver", "'postgres' needs a platform database: start Dash with DASH_PG_DSN "
                                          "set, or use 'lake' (or leave it unset)")]
    return []


def postgres_follower(spec: PipelineSpec, lake: Lake, dsn: str) -> SilverFollower:
    """A follower writing the pipeline's silver rows, and its rollups, into PostgreSQL.
    Connects lazily: a database that is down makes the follower retry, not the start fail."""
    from dash_ray.silver.postgres import PostgresSilver  # psycopg only where it is used

    store = PostgresSilver(dsn, spec.id, list(spec_schema(spec).columns), plan=spec_plan(spec))
    return SilverFollower(store, lake, spec.id)
