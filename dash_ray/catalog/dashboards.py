"""The catalog's dashboards: each kept as the JSON of its validated model, with a version
that goes up by one on each put that changes it, over the same `Backend` as the rest of the
catalog."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dash_ray.catalog.base import Backend, Transaction
from dash_ray.dashboards import Dashboard, parse_dashboard

__all__ = ["DashboardRecord", "Dashboards"]

_COLUMNS = "id, body, version, created_at, updated_at"


@dataclass(frozen=True)
class DashboardRecord:
    """A dashboard as stored: version 1 on create, + 1 with each put that changes it."""

    dashboard: Dashboard
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    created: bool = False

    @property
    def id(self) -> str:
        return self.dashboard.id


class Dashboards:
    """Put, get, list and delete dashboards; each call one short transaction."""

    def __init__(self, backend: Backend, clock: Callable[[], dt.datetime]) -> None:
        self._backend = backend
        self._clock = clock

    def put(self, dashboard: Dashboard) -> DashboardRecord:
        """Create the dashboard (version 1, `created` set) or replace it (version + 1); a put
        of the dashboard as it is stored changes nothing (its version stays)."""
        now = self._clock()
        body = json.dumps(dashboard.to_json_dict(), separators=(",", ":"))

        def work(tx: Transaction) -> DashboardRecord:
            inserted = tx.execute(
                "INSERT INTO dashboards (id, body, version, created_at, updated_at)"
                " VALUES (?, ?, 1, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id",
                (dashboard.id, body, now, now),
            )
            if not inserted:
                # An identical put changes nothing: same version, same updated_at.
                tx.execute("UPDATE dashboards SET body = ?, version = version + 1, updated_at = ?"
                           " WHERE id = ? AND body <> ?", (body, now, dashboard.id, body))
            rows = tx.execute(f"SELECT {_COLUMNS} FROM dashboards WHERE id = ?", (dashboard.id,))
            return _record(rows[0], created=bool(inserted))

        return self._backend.run(work)

    def get(self, dashboard_id: str) -> DashboardRecord | None:
        rows = self._backend.run(
            lambda tx: tx.execute(f"SELECT {_COLUMNS} FROM dashboards WHERE id = ?", (dashboard_id,)))
        return _record(rows[0]) if rows else None

    def list(self) -> list[DashboardRecord]:
        """Every dashboard, sorted by id."""
        rows = self._backend.run(lambda tx: tx.execute(f"SELECT {_COLUMNS} FROM dashboards ORDER BY id"))
        return [_record(row) for row in rows]

    def delete(self, dashboard_id: str) -> bool:
        """Forget the dashboard; False when there was none."""
        return bool(self._backend.run(
            lambda tx: tx.execute("DELETE FROM dashboards WHERE id = ? RETURNING id", (dashboard_id,))))


def _record(row: Sequence[Any], *, created: bool = False) -> DashboardRecord:
    dashboard_id, body, version, created_at, updated_at = row
    data = json.loads(body) if isinstance(body, str) else body
    return DashboardRecord(parse_dashboard(data), int(version), _utc(created_at), _utc(updated_at), created)


def _utc(value: str | dt.datetime) -> dt.datetime:
    """A stored time (ISO text from SQLite, a datetime from PostgreSQL) as aware UTC."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
