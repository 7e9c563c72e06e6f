"""The Python SDK: `dash_ray.connect(url, token)` → a Client over Dash's HTTP API.

Every method raises the same `DashError` subclass the server reported (SpecError with its
problems, BackpressureError with `retry_after`, ...). `ingest` signs the body with the
pipeline's secret; it returns only after the server has made the records durable.
"""

from __future__ import annotations

import gzip as gzip_module
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from dash_ray.errors import Problem, SpecError, UnavailableError, error_from_body
from dash_ray.ingest.signing import signature_header
from dash_ray.spec import PipelineSpec, load_spec

__all__ = ["Client", "IngestResult", "Pipeline", "connect"]

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Pipeline:
    """A pipeline as the server reports it. `ingest_secret` is set only in the answer to
    the request that created it (or rotated its secret); the server never shows it again."""

    id: str
    status: str
    restarts: int
    last_error: str | None
    counters: dict[str, Any]
    spec: dict[str, Any]
    version: int = 0
    ingest_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Pipeline:
        return cls(
            id=body["id"],
            status=body["status"],
            restarts=body.get("restarts", 0),
            last_error=body.get("last_error"),
            counters=body.get("counters") or {},
            spec=body.get("spec") or {},
            version=body.get("version", 0),
            ingest_secret=body.get("ingest_secret"),
        )


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    last_seq: int | None
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicate: bool = False


def _spec_data(spec: PipelineSpec | Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(spec, PipelineSpec):
        return spec.to_json_dict()
    if isinstance(spec, Mapping):
        return dict(spec)
    return load_spec(spec).to_json_dict()


class Client:
    """A synchronous client; use as a context manager or call `close()`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"user-agent": "dash-ray-sdk"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise UnavailableError(f"cannot reach Dash at {self.url}: {exc}", retry_after=1.0) from exc
        if response.status_code == 204:
            return None
        try:
            body = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            body = response.text
        if response.status_code >= 400:
            raise error_from_body(response.status_code, body)
        return body

    # -- pipelines -------------------------------------------------------------------------

    def deploy(self, spec: PipelineSpec | Mapping[str, Any] | str | Path) -> Pipeline:
        """Create or update a pipeline from a spec object, a dict, or a YAML/JSON file path."""
        data = _spec_data(spec)
        if "id" not in data:
            raise SpecError(problems=[Problem("id", "Field required")])
        return Pipeline.from_body(self._request("PUT", f"/v1/pipelines/{data['id']}", json=data))

    def list(self) -> list[Pipeline]:
        return [Pipeline.from_body(p) for p in self._request("GET", "/v1/pipelines")["pipelines"]]

    def get(self, pipeline_id: str) -> Pipeline:
        return Pipeline.from_body(self._request("GET", f"/v1/pipelines/{pipeline_id}"))

    def delete(self, pipeline_id: str, *, purge: bool = False) -> None:
        """Stop a pipeline. Its stored data stays unless `purge`."""
        self._request("DELETE", f"/v1/pipelines/{pipeline_id}", params={"purge": str(purge).lower()})

    def restart(self, pipeline_id: str) -> Pipeline:
        return Pipeline.from_body(self._request("POST", f"/v1/pipelines/{pipeline_id}/restart"))

    def rotate_secret(self, pipeline_id: str, *, grace_s: int = 86_400) -> str:
        """A new ingest secret; the old one stays valid for `grace_s` seconds."""
        body = self._request("POST", f"/v1/pipelines/{pipeline_id}/rotate-secret", params={"grace": grace_s})
        return body["ingest_secret"]

    # -- data ------------------------------------------------------------------------------

    def ingest(
        self,
        pipeline_id: str,
        records: Mapping[str, Any] | Iterable[Any] | bytes,
        *,
        secret: str,
        idempotency_key: str | None = None,
        ndjson: bool | None = None,
        gzip: bool = False,
    ) -> IngestResult:
        """Send records, signed with `secret`; returns once they are durable.

        `records`: one dict, an iterable of records (sent as NDJSON unless `ndjson=False`),
        or a ready body as bytes (JSON unless `ndjson=True`). Without `idempotency_key` a
        random one is used, so the SDK's own retries never store a batch twice."""
        if isinstance(records, bytes):
            body, is_ndjson = records, bool(ndjson)
        elif isinstance(records, Mapping):
            body, is_ndjson = orjson.dumps(records), False
        else:
            items = list(records)
            if ndjson is False:
                body, is_ndjson = orjson.dumps(items), False
            else:
                body, is_ndjson = b"".join(orjson.dumps(r) + b"\n" for r in items), True
        headers = {
            "content-type": "application/x-ndjson" if is_ndjson else "application/json",
            "idempotency-key": idempotency_key or uuid.uuid4().hex,
        }
        if gzip:
            body = gzip_module.compress(body)
            headers["content-encoding"] = "gzip"
        headers["dash-signature"] = signature_header(secret, body)
        result = self._request("POST", f"/v1/pipelines/{pipeline_id}/events", content=body, headers=headers)
        return IngestResult(
            accepted=result["accepted"],
            last_seq=result.get("last_seq"),
            rejected=result.get("rejected", []),
            duplicate=result.get("duplicate", False),
        )

    def records(self, pipeline_id: str, *, limit: int = 100, after: int | None = None) -> list[dict[str, Any]]:
        """The newest mapped records from the hot cache, oldest first: `{"seq","time","data"}`."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return self._request("GET", f"/v1/pipelines/{pipeline_id}/records", params=params)["records"]

    # -- platform --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def create_token(self, scope: str, *, name: str | None = None) -> dict[str, Any]:
        """A new bearer token with `scope` (read, write or admin); its plaintext is returned once."""
        return self._request("POST", "/v1/tokens", json={"scope": scope, "name": name or scope})

    def revoke_token(self, token_id: str) -> None:
        self._request("DELETE", f"/v1/tokens/{token_id}")


def connect(url: str = DEFAULT_URL, token: str | None = None, *, timeout: float = 30.0) -> Client:
    """A Client for the Dash API at `url`, authenticated with `token`."""
    return Client(url, token=token, timeout=timeout)

