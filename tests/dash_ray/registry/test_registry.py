"""The registry in plain Python (`dash_ray.registry`), without Ray: built from the platform's
settings over a real SQLite catalog and an in-memory runtime; ingest secrets, tokens, live
tickets, dashboards checked against the pipelines, a purge, and the web replicas' reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dash_ray.auth.tokens import hash_token
from dash_ray.errors import NotFoundError, SpecError, UnavailableError
from dash_ray.registry.core import RegistryCore
from dash_ray.registry.reports import WebReports
from tests.conftest import platform_settings
from tests.dash_ray.supervision.conftest import FakeRuntime

SPEC = {"id": "weather", "mapping": {"fields": {"device": {"path": "$.device", "type": "string"},
                                                "temp_c": {"path": "$.temp", "type": "double"}}}}


@pytest.fixture()
async def registry(tmp_path: Path) -> AsyncIterator[RegistryCore]:
    core = RegistryCore.from_settings(platform_settings(tmp_path / "home"), FakeRuntime())
    core.start()
    await core.supervisor.ready(wait_s=10)
    yield core
    await core.shutdown()


def test_the_settings_give_the_catalog_and_the_silver_database(tmp_path: Path) -> None:
    dsn = "postgresql://127.0.0.1:5432/elsewhere"
    core = RegistryCore.from_settings(platform_settings(tmp_path / "home", pg_dsn=dsn), FakeRuntime())
    assert core.silver_dsn == dsn  # handed to each pipeline at its start, and nothing else


async def test_ingest_secrets_rotate_with_a_grace_and_status_comes_from_the_supervisor(
        registry: RegistryCore) -> None:
    deployed = await registry.supervisor.put(SPEC)
    first = await registry.access.ingest_info("weather")
    assert first.secrets == (deployed.ingest_secret,) and first.status == "running" and first.spec.id == "weather"
    new = await registry.access.rotate_secret("weather", 60.0)
    after = await registry.access.ingest_info("weather")
    assert after.secrets == (new, deployed.ingest_secret)
    await registry.access.rotate_secret("weather", 0.0)
    assert new not in (await registry.access.ingest_info("weather")).secrets
    with pytest.raises(NotFoundError) as missing:
        await registry.access.ingest_info("nope")
    assert missing.value.where == "nope"


async def test_tokens_are_made_checked_by_hash_listed_and_revoked(registry: RegistryCore) -> None:
    access = registry.access
    made = await access.create_token("read", name="grafana")
    assert (made.scope, made.name) == ("read", "grafana") and "grafana" not in repr(made.token)
    assert await access.check_token(made.token) == "read"
    assert (await access.token_scopes())[hash_token(made.token)] == "read"
    assert [(t.id, t.name, t.scope) for t in await access.list_tokens()] == [(made.id, "grafana", "read")]
    await access.revoke_token(made.id)
    assert await access.check_token(made.token) is None and await access.list_tokens() == []
    with pytest.raises(NotFoundError):
        await access.revoke_token(made.id)
    with pytest.raises(SpecError) as bad:
        await access.create_token("root", name="x")
    assert bad.value.where == "scope" and "unknown scope" in bad.value.message


async def test_a_live_ticket_stands_for_its_token_once(registry: RegistryCore) -> None:
    ticket = registry.access.live_ticket("dash_token")
    assert registry.access.redeem_live_ticket(ticket) == "dash_token"
    assert registry.access.redeem_live_ticket(ticket) is None
    assert registry.access.redeem_live_ticket("dlt_made-up") is None


async def test_dashboards_are_checked_against_the_pipelines_there_are(registry: RegistryCore) -> None:
    dashboards = registry.dashboards
    board = {"id": "ops", "title": "Ops", "widgets": [{"kind": "line", "pipeline": "weather", "fields": ["temp_c"]}]}
    with pytest.raises(SpecError) as unknown:
        await dashboards.put(board)
    assert "weather" in unknown.value.message
    await registry.supervisor.put(SPEC)
    created = await dashboards.put(board)
    assert created.created and created.version == 1
    with pytest.raises(SpecError) as field:
        await dashboards.put({**board, "widgets": [{"kind": "line", "pipeline": "weather", "fields": ["nope"]}]})
    assert "nope" in field.value.message
    assert (await dashboards.put({**board, "title": "Ops 2"})).version == 2
    assert (await dashboards.get("ops")).dashboard.title == "Ops 2"
    assert [r.id for r in await dashboards.list()] == ["ops"]
    await dashboards.delete("ops")
    for missing in (dashboards.get("ops"), dashboards.delete("ops")):
        with pytest.raises(NotFoundError):
            await missing


async def test_a_delete_with_purge_removes_the_pipelines_lake_folders_and_log(
        registry: RegistryCore, tmp_path: Path) -> None:
    home = tmp_path / "home"
    await registry.supervisor.put({**SPEC, "id": "purged"})
    await registry.supervisor.put({**SPEC, "id": "kept"})
    for pipeline_id in ("purged", "kept"):
        for area in ("bronze", "silver", "dead"):
            (home / "lake" / area / pipeline_id).mkdir(parents=True, exist_ok=True)
            (home / "lake" / area / pipeline_id / "x.parquet").write_bytes(b"")
        (home / "wal" / pipeline_id).mkdir(parents=True, exist_ok=True)
    await registry.supervisor.delete("purged", purge=True)
    assert not any((home / "lake" / area / "purged").exists() for area in ("bronze", "silver", "dead"))
    assert not (home / "wal" / "purged").exists() and registry.supervisor.status("purged") is None
    assert all((home / "lake" / area / "kept" / "x.parquet").exists() for area in ("bronze", "silver", "dead"))
    assert (home / "wal" / "kept").exists()


async def test_calls_before_the_catalog_is_open_are_unavailable(tmp_path: Path) -> None:
    core = RegistryCore.from_settings(platform_settings(tmp_path / "home"), FakeRuntime())
    assert core.silver_dsn is None
    with pytest.raises(UnavailableError):
        await core.access.create_token("read", name="early")
    with pytest.raises(UnavailableError):
        await core.dashboards.list()


def test_web_reports_are_kept_a_while_and_bounded() -> None:
    now = [0.0]
    reports = WebReports(ttl_s=120.0, max_replicas=2, clock=lambda: now[0])
    reports.put("a", {"n": 1})
    now[0] = 100.0
    reports.put("b", {"n": 2})
    reports.put("a", {"n": 3})  # a known replica's new report replaces its last
    assert reports.current() == {"a": {"n": 3}, "b": {"n": 2}}
    now[0] = 250.0
    reports.put("c", {"n": 4})  # past the bound: the stale ones go first
    assert reports.current() == {"c": {"n": 4}}
    reports.put("d", {"n": 5})
    reports.put("e", {"n": 6})  # nothing stale: kept anyway, the bound is soft
    assert set(reports.current()) == {"c", "d", "e"}
    now[0] = 371.0
    assert reports.current() == {}
