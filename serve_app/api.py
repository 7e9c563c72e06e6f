"""Admin and read routes: pipelines (PUT/GET/DELETE, restart, secret rotation), tokens (create,
list without their values, revoke), named secrets (put, list names, delete; never read back),
recent records, and `/healthz`. Every route but `/healthz` checks a bearer token's scope:
reading needs `read`, changing needs `admin`. A spec may be PUT
as JSON or as YAML (`serve_app.requests.spec_body`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.errors import Problem, SpecError
from dash_ray.spec_check import check_spec
from serve_app.bodies import deployed_body, pipeline_body, secret_info_body, token_body, token_info_body
from serve_app.gateway import Gateway
from serve_app.requests import int_param, json_body, requires, spec_body
from serve_app.resources import item_route, list_route
from serve_app.responses import json_response

__all__ = ["api_routes"]

_MAX_RECORDS = 10_000


def api_routes(gateway: Gateway) -> list[Route]:
    registry = gateway.registry

    @requires("admin")
    async def put_pipeline(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        data = await spec_body(request)
        if not isinstance(data, dict):
            raise SpecError("a pipeline spec must be a JSON or YAML object", where="(spec)")
        data.setdefault("id", pipeline_id)
        if data["id"] != pipeline_id:
            # Every other problem too, in the same answer (checked as if the ids agreed).
            mismatch = Problem("id", f"spec id {str(data['id'])[:80]!r} does not match the URL's {pipeline_id!r}")
            checked = check_spec({**data, "id": pipeline_id})
            raise SpecError(problems=[mismatch, *checked.problems])
        deployed = await registry.put(data)
        gateway.forget(pipeline_id)
        return json_response(deployed_body(deployed), 201 if deployed.created else 200)

    @requires("admin")
    async def delete_pipeline(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        purge = request.query_params.get("purge", "false").lower() in ("1", "true", "yes")
        await registry.delete(pipeline_id, purge=purge)
        gateway.forget(pipeline_id, deleted=True)
        return Response(status_code=204)

    @requires("admin")
    async def restart_pipeline(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        view = await registry.restart(pipeline_id)
        gateway.forget(pipeline_id)
        return json_response(pipeline_body(view))

    @requires("admin")
    async def rotate_secret(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        grace = int_param(request, "grace", 86_400, low=0, high=30 * 86_400)
        secret = await registry.rotate_secret(pipeline_id, grace_s=grace)
        gateway.forget(pipeline_id)
        return json_response({"id": pipeline_id, "ingest_secret": secret})

    @requires("read")
    async def records(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        limit = int_param(request, "limit", 100, low=0, high=_MAX_RECORDS)
        after = int_param(request, "after", None, low=0, high=2**63 - 1)
        await gateway.info(pipeline_id)  # 404 for an unknown pipeline
        return json_response({"records": await gateway.pipeline(pipeline_id).records(after, limit)})

    @requires("admin")
    async def create_token(request: Request) -> Response:
        data = await json_body(request)
        if not isinstance(data, dict) or not isinstance(data.get("scope"), str):
            raise SpecError("give {\"scope\": \"read|write|admin\", \"name\": ...}", where="scope")
        name = data.get("name") or data["scope"]
        made = await registry.create_token(data["scope"], name=str(name))
        gateway.forget_tokens()
        return json_response(token_body(made), 201)

    @requires("admin")
    async def revoke_token(request: Request) -> Response:
        await registry.revoke_token(request.path_params["token_id"])
        gateway.forget_tokens()
        return Response(status_code=204)

    @requires("admin")
    async def put_secret(request: Request) -> Response:
        data = await json_body(request)
        value = data.get("value") if isinstance(data, dict) else None
        created = await registry.put_secret(request.path_params["name"], value)
        return json_response({"name": request.path_params["name"], "created": created}, 201 if created else 200)

    @requires("admin")
    async def delete_secret(request: Request) -> Response:
        await registry.delete_secret(request.path_params["name"])
        return Response(status_code=204)

    node = _node_id()

    async def healthz(request: Request) -> Response:
        await gateway.ready()
        return json_response({"status": "ok", "node": node})

    return [
        Route("/healthz", healthz, methods=["GET"]),
        list_route("/v1/pipelines", "pipelines", registry.pipelines, pipeline_body),
        Route("/v1/pipelines/{pipeline_id}", put_pipeline, methods=["PUT"]),
        item_route("/v1/pipelines/{pipeline_id}", registry.get, pipeline_body),
        Route("/v1/pipelines/{pipeline_id}", delete_pipeline, methods=["DELETE"]),
        Route("/v1/pipelines/{pipeline_id}/restart", restart_pipeline, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/rotate-secret", rotate_secret, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/records", records, methods=["GET"]),
        Route("/v1/tokens", create_token, methods=["POST"]),
        list_route("/v1/tokens", "tokens", registry.list_tokens, token_info_body, scope="admin"),
        Route("/v1/tokens/{token_id}", revoke_token, methods=["DELETE"]),
        list_route("/v1/secrets", "secrets", registry.list_secrets, secret_info_body, scope="admin"),
        Route("/v1/secrets/{name}", put_secret, methods=["PUT"]),
        Route("/v1/secrets/{name}", delete_secret, methods=["DELETE"]),
    ]


def _node_id() -> str | None:
    """The Ray node this replica runs on (None outside Ray): which web node answered."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
