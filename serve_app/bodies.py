"""The JSON bodies the admin routes answer with: a pipeline (`PipelineView`), the answer to
its PUT (`Deployed`), a token, a dashboard, a replay job. Times are ISO 8601 UTC with a `Z`.
(The page's views are `static/js/views.js`.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dash_ray.catalog import DashboardRecord, SecretInfo, TokenInfo
from dash_ray.lifecycle.jobstore import Job
from dash_ray.registry.access import NewToken
from dash_ray.supervision.view import Deployed, PipelineView

__all__ = ["dashboard_body", "deployed_body", "job_body", "pipeline_body", "secret_info_body", "token_body",
           "token_info_body"]


def _time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def pipeline_body(view: PipelineView) -> dict[str, Any]:
    """`GET /v1/pipelines/{id}`: the spec as deployed (fields in their order), the status, and
    the counters as of `counters_at`."""
    body = {
        "id": view.id,
        "status": view.status,
        "restarts": view.restarts,
        "last_error": view.last_error,
        "version": view.version,
        "counters": dict(view.counters),
        "counters_at": _time(view.counters_at),
        "waiting_in_log": view.waiting_in_log,
        "node": view.node,
        "placement": view.placement,
        "host": view.host,
        "next_restart_at": _time(view.next_restart_at),
        "source_state": view.source_state,
        "spec": view.spec.to_json_dict(),
        "created_at": _time(view.created_at),
        "updated_at": _time(view.updated_at),
    }
    if view.source_state is not None:
        body["source_state"] = view.source_state
    return body


def deployed_body(deployed: Deployed) -> dict[str, Any]:
    """`PUT /v1/pipelines/{id}`: the pipeline, with its `ingest_secret` when this call made it."""
    body = pipeline_body(deployed.pipeline)
    if deployed.ingest_secret is not None:
        body["ingest_secret"] = deployed.ingest_secret
    return body


def token_info_body(token: TokenInfo) -> dict[str, Any]:
    """One entry of `GET /v1/tokens`: what identifies a token, never the token or its hash."""
    return {"id": token.id, "name": token.name, "scope": token.scope, "created_at": _time(token.created_at)}


def secret_info_body(info: SecretInfo) -> dict[str, Any]:
    """One entry of `GET /v1/secrets`: a named secret's name and times, never its value."""
    return {"name": info.name, "created_at": _time(info.created_at), "updated_at": _time(info.updated_at)}


def token_body(token: NewToken) -> dict[str, Any]:
    return {"id": token.id, "token": token.token, "scope": token.scope, "name": token.name}


def dashboard_body(record: DashboardRecord) -> dict[str, Any]:
    """A dashboard as served: its definition, version and times."""
    return {**record.dashboard.to_json_dict(), "version": record.version,
            "created_at": _time(record.created_at), "updated_at": _time(record.updated_at)}


def job_body(job: Job) -> dict[str, Any]:
    """A replay job (docs/API.md, Replay and jobs): its fields, and its id as `job` too."""
    return {"job": job.id, **job.as_dict()}
