"""The platform's log namespace: the first part of every log's name in a shared backend
(`dash_ray.log.choice.log_name`: a JetStream stream and subject, the `log` key of PostgreSQL's
rows), so two platforms sharing one NATS server or one database never read each other's logs
for pipelines of the same id.

`DASH_LOG_NAMESPACE` names it. Without it, `dash-ray up` keeps one, made at the first `up`:
in the catalog's database when the catalog is in PostgreSQL (table `dash.log_namespace`, so a
head rebuilt with an empty home finds it again), else in the platform's home
(`$DASH_HOME/log-namespace`). A new platform gets `p` and 12 random hex digits. A platform an
earlier Dash already ran (a catalog, admin token, secret key or run file in its home, or
pipelines in its PostgreSQL catalog, and no namespace kept) gets the Ray namespace (`dash`),
the first part its logs were named with: they are found again as they are, nothing renamed.
Once kept, it is read ever after.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["NAMESPACE_FILE", "platform_log_namespace", "ran_before"]

NAMESPACE_FILE = "log-namespace"
# What an earlier `up` leaves in the home: a platform ran there before namespaces were kept.
_EARLIER = ("catalog.sqlite", "admin.token", "secret.key", "run.json")
_TABLE = ("CREATE TABLE IF NOT EXISTS dash.log_namespace ("
          " only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row), namespace TEXT NOT NULL)")


def ran_before(home: Path, pg_dsn: str | None = None) -> bool:
    """Whether a platform already ran in `home` (it holds what `up` makes), or, for a catalog
    in PostgreSQL (`pg_dsn`), whether that catalog has pipelines. Raises OSError when the
    database cannot say (guessing would name the logs wrongly for good)."""
    if any((home / name).exists() for name in _EARLIER):
        return True
    if not pg_dsn:
        return False
    import psycopg

    try:
        with psycopg.connect(pg_dsn, connect_timeout=10) as conn:
            found = conn.execute("SELECT to_regclass('dash.pipelines')").fetchone()
            if found is None or found[0] is None:
                return False
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM dash.pipelines)").fetchone()
            return bool(row and row[0])
    except psycopg.Error as exc:
        raise OSError(f"the log namespace: cannot tell whether the catalog has pipelines: {exc}") from exc


def platform_log_namespace(home: Path, *, legacy: str, explicit: str | None = None,
                           pg_dsn: str | None = None) -> str:
    """The platform's log namespace: `explicit` (DASH_LOG_NAMESPACE) when given, else the
    one kept in the catalog's database (`pg_dsn`) or in `home`, made now when there is none
    (see the module docstring; `legacy`: the Ray namespace, for a platform an earlier Dash
    ran). Two `up`s racing agree on one."""
    if explicit:
        return explicit
    if pg_dsn:
        return _in_database(pg_dsn, home, legacy)
    path = home / NAMESPACE_FILE
    if not path.exists():
        made = _made(home, legacy, None)
        home.mkdir(parents=True, exist_ok=True)
        draft = home / f".{NAMESPACE_FILE}.{os.getpid()}"
        draft.write_text(made + "\n")
        try:
            os.link(draft, path)  # whole or not at all; a racing `up` that linked first wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    kept = path.read_text().strip()
    if not kept:
        raise ValueError(f"{path} is empty: put the platform's log namespace back in it, or set DASH_LOG_NAMESPACE")
    return kept


def _made(home: Path, legacy: str, pg_dsn: str | None) -> str:
    kept = home / NAMESPACE_FILE
    if kept.exists() and (text := kept.read_text().strip()):
        return text  # a home file from before the catalog moved to PostgreSQL
    return legacy if ran_before(home, pg_dsn) else f"p{secrets.token_hex(6)}"


def _in_database(pg_dsn: str, home: Path, legacy: str) -> str:
    import psycopg

    try:
        with psycopg.connect(pg_dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS dash")
            conn.execute(_TABLE)
            row = conn.execute("SELECT namespace FROM dash.log_namespace").fetchone()
            if row is None:
                conn.execute("INSERT INTO dash.log_namespace (namespace) VALUES (%s) ON CONFLICT DO NOTHING",
                             (_made(home, legacy, pg_dsn),))
                row = conn.execute("SELECT namespace FROM dash.log_namespace").fetchone()
    except psycopg.Error as exc:
        raise OSError(f"the log namespace: the catalog's database cannot keep it: {exc}") from exc
    assert row is not None
    return str(row[0])
