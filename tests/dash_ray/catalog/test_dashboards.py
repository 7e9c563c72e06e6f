"""Dashboards in the catalog, against every backend: put creates then replaces (versions),
get/list/delete, the body kept as validated, and a catalog made before dashboards existed
gaining the table when opened again."""

from __future__ import annotations

from pathlib import Path

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog import Catalog
from dash_ray.catalog.sqlite import SqliteBackend
from dash_ray.catalog.store import Catalog as CatalogClass
from dash_ray.dashboards import parse_dashboard
from tests.dash_ray.catalog.conftest import FakeClock, Place


def board(dashboard_id: str = "ops", title: str = "Ops", **extra):
    widgets = [{"kind": "line", "pipeline": "weather", "fields": ["temp_c"], "window": "1h"},
               {"kind": "stat", "pipeline": "weather", "agg": "avg:temp_c"}]
    return parse_dashboard({"id": dashboard_id, "title": title, "widgets": widgets, **extra})


def test_put_creates_then_replaces(catalog: Catalog, clock: FakeClock) -> None:
    created = catalog.dashboards.put(board())
    assert (created.created, created.version, created.dashboard) == (True, 1, board())
    clock.advance(5)
    replaced = catalog.dashboards.put(board(title="Operations"))
    assert (replaced.created, replaced.version) == (False, 2)
    assert replaced.dashboard.title == "Operations"
    assert replaced.created_at == created.created_at
    assert (replaced.updated_at - created.updated_at).total_seconds() == 5


def test_an_identical_put_changes_nothing(catalog: Catalog, clock: FakeClock) -> None:
    """Issue 22: putting the same dashboard again bumped its version."""
    created = catalog.dashboards.put(board())
    clock.advance(5)
    again = catalog.dashboards.put(board())
    assert (again.created, again.version, again.updated_at) == (False, 1, created.updated_at)
    assert catalog.dashboards.put(board(title="Other")).version == 2


def test_get_list_delete(catalog: Catalog) -> None:
    catalog.dashboards.put(board("zeta", "Z"))
    catalog.dashboards.put(board("alpha", "A"))
    assert [r.id for r in catalog.dashboards.list()] == ["alpha", "zeta"]
    got = catalog.dashboards.get("zeta")
    assert got is not None and got.dashboard.widgets[0].fields == ("temp_c",)
    assert catalog.dashboards.get("nope") is None
    assert catalog.dashboards.delete("zeta") is True
    assert catalog.dashboards.delete("zeta") is False
    assert [r.id for r in catalog.dashboards.list()] == ["alpha"]


def test_dashboards_survive_a_reopen(place: Place) -> None:
    first = place.open()
    first.dashboards.put(board("kept", "Kept"))
    first.close()
    again = place.open()
    try:
        kept = again.dashboards.get("kept")
        assert kept is not None and kept.dashboard == board("kept", "Kept")
    finally:
        again.close()


def test_a_catalog_made_before_dashboards_gains_the_table(tmp_path: Path) -> None:
    key = SecretBox.generate_key()
    old = SqliteBackend(tmp_path / "catalog.sqlite")
    old.migrations = old.migrations[:1]
    CatalogClass(old, box=SecretBox([key])).close()
    catalog = CatalogClass(SqliteBackend(tmp_path / "catalog.sqlite"), box=SecretBox([key]))
    try:
        assert catalog.dashboards.put(board()).version == 1
    finally:
        catalog.close()
