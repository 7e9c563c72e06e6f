"""The SDK's calls on a pipeline's sinks (`Client.sinks`, `Client.redeliver`), as a base of
`dash_ray.client.api.Client`."""

from __future__ import annotations

from typing import Any

from dash_ray.client.transport import json_object, json_rows

__all__ = ["SinkCalls"]


class SinkCalls:
    def _request(self, method: str, path: str, *, retry: bool | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def sinks(self, pipeline_id: str) -> list[dict[str, Any]]:
        """Each sink of the pipeline: `state`, `breaker`, counters (`delivered`, `failed`,
        `retrying`, `queued`, `dead`), `last_error`, `last_delivered_seq`, `dead_deliveries`
        (docs/API.md, Sinks [ext])."""
        return json_rows(self._request("GET", f"/v1/pipelines/{pipeline_id}/sinks"), "sinks")

    def redeliver(self, pipeline_id: str, sink: str) -> int:
        """Queue a sink's dead deliveries again (same ids; a sink a 410 disabled is enabled
        again); how many."""
        answer = json_object(self._request("POST", f"/v1/pipelines/{pipeline_id}/sinks/{sink}/redeliver"))
        return int(answer["redelivered"])
