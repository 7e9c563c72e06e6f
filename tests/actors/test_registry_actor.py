"""The registry actor on a real local Ray: one per namespace (found again rather than made
twice), each method reaching its core (pipelines through real pipeline actors, access,
dashboards, the web reports), errors crossing as the same class, and Ray restarting it, after
which it adopts the pipeline still running."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import ray

from actors.names import actor_name
from actors.registry import get_or_create_registry
from dash_ray.auth.tokens import hash_token
from dash_ray.errors import NotFoundError, SpecError
from tests.actors.conftest import Made
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

FIELDS = {"time": {"path": "$.ts", "type": "timestamp"}, "temp_c": {"path": "$.temp", "type": "double"}}


def call(ref: Any, timeout: float = 120.0) -> Any:
    return ray.get(ref, timeout=timeout)


@pytest.fixture(scope="module")
def registry(made: Made, tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = made.settings(tmp_path_factory.mktemp("registry") / "home")
    made.names.add("registry")
    registry = get_or_create_registry(settings)
    assert get_or_create_registry(settings)._actor_id == registry._actor_id  # found, not made again
    call(registry.ready.remote(60))
    yield registry
    call(registry.shutdown.remote())


def test_pipelines_are_put_run_listed_restarted_and_deleted(registry: Any, made: Made) -> None:
    pipeline_id = f"reg-{uuid.uuid4().hex[:6]}"
    made.names.add(actor_name(pipeline_id))
    deployed = call(registry.put.remote({"id": pipeline_id, "mapping": {"fields": FIELDS}}))
    assert deployed.created and deployed.ingest_secret and deployed.pipeline.status == "running"
    actor = ray.get_actor(actor_name(pipeline_id), namespace=made.namespace)
    assert call(actor.health.remote())["state"] == "running"
    assert call(registry.get.remote(pipeline_id)).status == "running"
    assert pipeline_id in [v.id for v in call(registry.pipelines.remote())]
    assert pipeline_id in call(registry.pipeline_ids.remote())
    assert call(registry.restart.remote(pipeline_id)).status == "running"
    with pytest.raises(SpecError) as refused:  # the same class, its problems kept
        call(registry.put.remote({"id": pipeline_id, "hot_records": 0, "mapping": {"fields": FIELDS}}))
    assert [p.path for p in refused.value.cause.problems] == ["hot_records"]
    call(registry.delete.remote(pipeline_id, True))
    with pytest.raises(NotFoundError):
        call(registry.get.remote(pipeline_id))
    wait_for(lambda: not _named(made, actor_name(pipeline_id)), what="the pipeline's actor to be gone")


def test_access_dashboards_and_reports_reach_their_core(registry: Any, made: Made) -> None:
    pipeline_id = f"acc-{uuid.uuid4().hex[:6]}"
    made.names.add(actor_name(pipeline_id))
    deployed = call(registry.put.remote({"id": pipeline_id, "mapping": {"fields": FIELDS}}))
    secret = call(registry.rotate_secret.remote(pipeline_id, 60.0))
    assert call(registry.ingest_info.remote(pipeline_id)).secrets == (secret, deployed.ingest_secret)
    assert call(registry.silver_dsn.remote()) is None
    made_token = call(registry.create_token.remote("read", "ops"))
    assert call(registry.check_token.remote(made_token.token)) == "read"
    assert call(registry.token_scopes.remote())[hash_token(made_token.token)] == "read"
    assert made_token.id in [t.id for t in call(registry.list_tokens.remote())]
    call(registry.revoke_token.remote(made_token.id))
    with pytest.raises(NotFoundError) as missing:
        call(registry.revoke_token.remote(made_token.id))
    assert missing.value.cause.where == made_token.id
    with pytest.raises(SpecError) as bad_scope:
        call(registry.create_token.remote("root", "x"))
    assert bad_scope.value.cause.where == "scope"
    ticket = call(registry.live_ticket.remote("dash_t"))
    assert call(registry.redeem_live_ticket.remote(ticket)) == "dash_t"
    assert call(registry.redeem_live_ticket.remote(ticket)) is None
    call(registry.report_web.remote("replica-1", {"requests": 3}))
    assert call(registry.web_reports.remote())["replica-1"] == {"requests": 3}
    board = {"id": "ops", "title": "Ops", "widgets": [{"kind": "line", "pipeline": pipeline_id, "fields": ["temp_c"]}]}
    assert call(registry.put_dashboard.remote(board)).created
    assert call(registry.dashboard.remote("ops")).dashboard.title == "Ops"
    assert [d.id for d in call(registry.dashboards.remote())] == ["ops"]
    call(registry.delete_dashboard.remote("ops"))
    with pytest.raises(NotFoundError):
        call(registry.dashboard.remote("ops"))
    with pytest.raises(SpecError):
        call(registry.put_dashboard.remote({**board, "widgets": [{"kind": "line", "pipeline": "nope", "fields": []}]}))
    call(registry.delete.remote(pipeline_id, False))


def test_ray_restarts_the_registry_which_adopts_the_running_pipeline(registry: Any, made: Made) -> None:
    pipeline_id = f"adopt-{uuid.uuid4().hex[:6]}"
    made.names.add(actor_name(pipeline_id))
    call(registry.put.remote({"id": pipeline_id, "mapping": {"fields": FIELDS}}))
    before = ray.get_actor(actor_name(pipeline_id), namespace=made.namespace)
    pid = call(registry.__ray_call__.remote(lambda self: __import__("os").getpid()))
    ray.kill(registry, no_restart=False)  # as a crash: Ray's restart policy applies
    wait_for(lambda: call(registry.__ray_call__.remote(lambda self: __import__("os").getpid()), 10) != pid,
             what="Ray to restart the registry")
    call(registry.ready.remote(60))
    assert call(registry.get.remote(pipeline_id)).status == "running"
    after = ray.get_actor(actor_name(pipeline_id), namespace=made.namespace)
    assert after._actor_id == before._actor_id  # adopted, not started again
    call(registry.delete.remote(pipeline_id, False))


def _named(made: Made, name: str) -> bool:
    try:
        ray.get_actor(name, namespace=made.namespace)
    except ValueError:
        return False
    return True
