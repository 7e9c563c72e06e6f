"""Which silver stores a pipeline writes, and that the database's DSN never travels with what a
pipeline actor is constructed from."""

from __future__ import annotations

import pickle

from dash_ray.settings import Settings
from dash_ray.silver.choice import silver_problems, uses_postgres
from dash_ray.spec import parse_spec

DSN = "postgresql://dash:s3cret-password@db.example:5432/dash"


def spec(silver: str | None) -> object:
    return parse_spec({"id": "choice", "storage": {"silver": silver}})


def test_postgres_when_asked_or_left_to_a_platform_with_a_database() -> None:
    assert uses_postgres(spec("postgres"), has_dsn=True)  # type: ignore[arg-type]
    assert uses_postgres(spec(None), has_dsn=True)  # type: ignore[arg-type]
    assert not uses_postgres(spec(None), has_dsn=False)  # type: ignore[arg-type]
    assert not uses_postgres(spec("lake"), has_dsn=True)  # type: ignore[arg-type]


def test_postgres_without_a_database_is_a_problem_at_storage_silver() -> None:
    [problem] = silver_problems(spec("postgres"), has_dsn=False)  # type: ignore[arg-type]
    assert problem.path == "storage.silver" and "DASH_PG_DSN" in problem.message
    assert silver_problems(spec("postgres"), has_dsn=True) == []  # type: ignore[arg-type]
    assert silver_problems(spec(None), has_dsn=False) == []  # type: ignore[arg-type]


def test_the_pipeline_actor_s_settings_carry_no_dsn() -> None:
    settings = Settings.from_env(env={"DASH_PG_DSN": DSN}, home="/tmp/dash-choice-test")
    assert settings.pg_dsn == DSN
    part = settings.pipeline()
    assert b"s3cret-password" not in pickle.dumps(part) and "s3cret" not in repr(part)
