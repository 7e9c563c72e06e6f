"""Admin and read routes: pipelines (PUT/GET/DELETE, restart, secret rotation), tokens (create,
list without their values, revoke),
recent records, and `/healthz`. Every route but `/healthz` checks a bearer token's scope:
reading needs `read`, changing needs `admin`. A spec may be PUT as JSON or as YAML
(`Content-Type: application/yaml`, `text/yaml` or `application/x-yaml`), at most 1 MiB."""

from __future__ import annotations

from typing import Any

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.errors import MalformedBodyError, Problem, SpecError
from dash_ray.spec import yaml_error_text
from dash_ray.spec_check import check_spec
from serve_app.gateway import Gateway
from serve_app.ingress import read_body
from serve_app.responses import json_response
from serve_app.views import deployed_body, pipeline_body, token_body, token_info_body

__all__ = ["api_routes"]

_MAX_SPEC_BYTES = 1024 * 1024
_MAX_RECORDS = 10_000
_YAML_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml"})


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML without aliases: an alias repeats a node by reference, and a few of them
    nested let a small body stand for an enormous spec."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted in a spec",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _int_param(request: Request, name: str, default: int | None, *, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MalformedBodyError(f"query parameter {name!r} must be an integer", where=name) from None
    if not low <= value <= high:
        raise MalformedBodyError(f"query parameter {name!r} must be between {low} and {high}", where=name)
    return value


async def _json_body(request: Request) -> Any:
    body = await read_body(request, _MAX_SPEC_BYTES)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}", where="body") from None


async def _spec_body(request: Request) -> Any:
    """The spec a PUT carries, as plain data with its keys in the order written."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in _YAML_TYPES:
        return await _json_body(request)
    body = await read_body(request, _MAX_SPEC_BYTES)
    try:
        return yaml.load(body, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        at, problem = yaml_error_text(exc)
        raise MalformedBodyError(f"body is not valid YAML: {at}: {problem}", where="body") from None


def api_routes(gateway: Gateway) -> list[Route]:
    async def auth(request: Request, needed: str) -> None:
        await gateway.authorize(request.headers.get("authorization"), needed)

    async def put_pipeline(request: Request) -> Response:
        await auth(request, "admin")
        pipeline_id = request.path_params["pipeline_id"]
        data = await _spec_body(request)
        if not isinstance(data, dict):
            raise SpecError("a pipeline spec must be a JSON or YAML object", where="(spec)")
        data.setdefault("id", pipeline_id)
        if data["id"] != pipeline_id:
            # Every other problem too, in the same answer (checked as if the ids agreed).
            mismatch = Problem("id", f"spec id {str(data['id'])[:80]!r} does not match the URL's {pipeline_id!r}")
            checked = check_spec({**data, "id": pipeline_id})
            raise SpecError(problems=[mismatch, *checked.problems])
        deployed = await gateway.registry.put(data)
        gateway.forget(pipeline_id)
        return json_response(deployed_body(deployed), 201 if deployed.created else 200)

    async def list_pipelines(request: Request) -> Response:
        await auth(request, "read")
        return json_response({"pipelines": [pipeline_body(v) for v in await gateway.registry.pipelines()]})

    async def get_pipeline(request: Request) -> Response:
        await auth(request, "read")
        return json_response(pipeline_body(await gateway.registry.get(request.path_params["pipeline_id"])))

    async def delete_pipeline(request: Request) -> Response:
        await auth(request, "admin")
        pipeline_id = request.path_params["pipeline_id"]
        purge = request.query_params.get("purge", "false").lower() in ("1", "true", "yes")
        await gateway.registry.delete(pipeline_id, purge=purge)
        gateway.forget(pipeline_id, deleted=True)
        return Response(status_code=204)

    async def restart_pipeline(request: Request) -> Response:
        await auth(request, "admin")
        pipeline_id = request.path_params["pipeline_id"]
        view = await gateway.registry.restart(pipeline_id)
        gateway.forget(pipeline_id)
        return json_response(pipeline_body(view))

    async def rotate_secret(request: Request) -> Response:
        await auth(request, "admin")
        pipeline_id = request.path_params["pipeline_id"]
        grace = _int_param(request, "grace", 86_400, low=0, high=30 * 86_400)
        secret = await gateway.registry.rotate_secret(pipeline_id, grace_s=grace)
        gateway.forget(pipeline_id)
        return json_response({"id": pipeline_id, "ingest_secret": secret})

    async def records(request: Request) -> Response:
        await auth(request, "read")
        pipeline_id = request.path_params["pipeline_id"]
        limit = _int_param(request, "limit", 100, low=0, high=_MAX_RECORDS)
        after = _int_param(request, "after", None, low=0, high=2**63 - 1)
        await gateway.info(pipeline_id)  # 404 for an unknown pipeline
        return json_response({"records": await gateway.records(pipeline_id, after, limit)})

    async def create_token(request: Request) -> Response:
        await auth(request, "admin")
        data = await _json_body(request)
        if not isinstance(data, dict) or not isinstance(data.get("scope"), str):
            raise SpecError("give {\"scope\": \"read|write|admin\", \"name\": ...}", where="scope")
        name = data.get("name") or data["scope"]
        made = await gateway.registry.create_token(data["scope"], name=str(name))
        gateway.forget_tokens()
        return json_response(token_body(made), 201)

    async def list_tokens(request: Request) -> Response:
        await auth(request, "admin")
        return json_response({"tokens": [token_info_body(t) for t in await gateway.registry.list_tokens()]})

    async def revoke_token(request: Request) -> Response:
        await auth(request, "admin")
        await gateway.registry.revoke_token(request.path_params["token_id"])
        gateway.forget_tokens()
        return Response(status_code=204)

    async def healthz(request: Request) -> Response:
        await gateway.ready()
        return json_response({"status": "ok"})

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/pipelines", list_pipelines, methods=["GET"]),
        Route("/v1/pipelines/{pipeline_id}", put_pipeline, methods=["PUT"]),
        Route("/v1/pipelines/{pipeline_id}", get_pipeline, methods=["GET"]),
        Route("/v1/pipelines/{pipeline_id}", delete_pipeline, methods=["DELETE"]),
        Route("/v1/pipelines/{pipeline_id}/restart", restart_pipeline, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/rotate-secret", rotate_secret, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/records", records, methods=["GET"]),
        Route("/v1/tokens", create_token, methods=["POST"]),
        Route("/v1/tokens", list_tokens, methods=["GET"]),
        Route("/v1/tokens/{token_id}", revoke_token, methods=["DELETE"]),
    ]
