"""What only the PostgreSQL backend does: its own schema, one reconnect after a dropped
connection, a clear error (without the password) when unreachable, and its migrations."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog import Catalog, open_catalog
from dash_ray.catalog.postgres import PostgresBackend
from dash_ray.spec import parse_spec
from tests.dash_ray.catalog.test_create_and_order import ORDERED


def spec(pipeline_id: str = "weather"):
    return parse_spec({"id": pipeline_id, "source": {"kind": "push"}})


def test_postgres_tables_live_in_their_own_schema(pg_dsn: str) -> None:
    catalog = open_catalog(pg_dsn, box=SecretBox([SecretBox.generate_key()]))
    try:
        with psycopg.connect(pg_dsn) as conn:
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_name IN ('pipelines', 'pipeline_secrets', 'tokens', 'schema_version')"
            ).fetchall()
        assert sorted(tables) == [
            ("dash", "pipeline_secrets"), ("dash", "pipelines"), ("dash", "schema_version"), ("dash", "tokens"),
        ]
    finally:
        catalog.close()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA dash CASCADE")


def test_postgres_reconnects_once_after_a_dropped_connection(pg_dsn: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    catalog = open_catalog(pg_dsn, box=SecretBox([SecretBox.generate_key()]), pg_schema=schema)
    try:
        catalog.put_pipeline(spec(), secret="whsec_a")
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            pid = catalog._backend._conn.info.backend_pid  # type: ignore[attr-defined]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        catalog.set_state("weather", status="running", restarts=0, last_error=None)
        assert catalog.get_pipeline("weather").status == "running"  # type: ignore[union-attr]
    finally:
        catalog.close()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_postgres_unreachable_is_unavailable_and_hides_the_password() -> None:
    from dash_ray.errors import UnavailableError

    with pytest.raises(UnavailableError) as caught:
        open_catalog(
            "postgresql://dash:hunter2@127.0.0.1:1/nowhere?connect_timeout=2",
            box=SecretBox([SecretBox.generate_key()]),
        )
    assert "hunter2" not in str(caught.value) and "127.0.0.1:1/nowhere" in str(caught.value)


def test_postgres_migration_2_turns_jsonb_specs_into_text(pg_dsn: str) -> None:
    schema = "t_migrate_spec_text"
    key = SecretBox.generate_key()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    try:
        # A catalog made by a Dash that knew only the baseline (spec JSONB).
        old = PostgresBackend(pg_dsn, schema=schema)
        old.migrations = old.migrations[:1]
        v1 = Catalog(old, box=SecretBox([key]))
        v1.put_pipeline(parse_spec({"id": "old", "source": {"kind": "push"}}), secret="whsec_old")
        v1.close()
        catalog = Catalog(PostgresBackend(pg_dsn, schema=schema), box=SecretBox([key]))
        try:
            record = catalog.get_pipeline("old")
            assert record is not None and record.secrets[0].secret == "whsec_old"
            catalog.create_pipeline(parse_spec(ORDERED), secret="whsec_new")
            assert list(catalog.get_pipeline("ordered").spec.mapping.fields)[:2] == ["temp_c", "feels_f"]  # type: ignore[union-attr]
        finally:
            catalog.close()
        with psycopg.connect(pg_dsn) as conn:
            kind = conn.execute(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = 'pipelines' AND column_name = 'spec'",
                (schema,)).fetchone()
            versions = conn.execute(f'SELECT version FROM "{schema}".schema_version ORDER BY version').fetchall()
        assert kind == ("text",) and versions == [(1,), (2,), (3,), (4,), (5,)]
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
