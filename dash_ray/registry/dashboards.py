"""The platform's dashboards as the registry keeps them: each checked against the pipelines
there are before it is stored in the catalog (a widget over a pipeline or a field there is not
is a SpecError naming it), read, listed and deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from dash_ray.catalog import Catalog, DashboardRecord
from dash_ray.dashboards import check_dashboard, parse_dashboard
from dash_ray.errors import NotFoundError
from dash_ray.spec import PipelineSpec

__all__ = ["Dashboards"]


class Dashboards:
    """Dashboards in the catalog `catalog()` gives, checked against `specs()` (every
    pipeline's spec by id)."""

    def __init__(self, catalog: Callable[[], Catalog], specs: Callable[[], Mapping[str, PipelineSpec]]) -> None:
        self._catalog = catalog
        self._specs = specs

    async def put(self, data: dict[str, Any]) -> DashboardRecord:
        """Create or replace a dashboard; SpecError (422) naming each problem, including
        widgets over pipelines or fields there are not."""
        dashboard = parse_dashboard(data)
        check_dashboard(dashboard, self._specs())
        return await asyncio.to_thread(self._catalog().dashboards.put, dashboard)

    async def list(self) -> list[DashboardRecord]:
        return await asyncio.to_thread(self._catalog().dashboards.list)

    async def get(self, dashboard_id: str) -> DashboardRecord:
        record = await asyncio.to_thread(self._catalog().dashboards.get, dashboard_id)
        if record is None:
            raise NotFoundError(f"no dashboard {dashboard_id!r}", where=dashboard_id)
        return record

    async def delete(self, dashboard_id: str) -> None:
        if not await asyncio.to_thread(self._catalog().dashboards.delete, dashboard_id):
            raise NotFoundError(f"no dashboard {dashboard_id!r}", where=dashboard_id)
