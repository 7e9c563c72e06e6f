"""`Client`: the Python SDK over Dash's HTTP API (`dash_ray.connect(url, token)`).

Every method raises the `DashError` subclass the server reported (SpecError with its problems,
BackpressureError with `retry_after`, AuthError, ForbiddenError, ...). `ingest` signs the body
with the pipeline's secret; it returns only after the server has made the records durable
(with `wait="stored"`, once queries see them).

Retries, bounded by `ClientSettings` (`dash_ray/client/transport.py`): a call that cannot change
anything twice (GET, PUT, DELETE, and `ingest`, which always carries an `Idempotency-Key`) is
sent again after a connection error, a 503 or a 429, waiting as the answer's `Retry-After`
says; a restart, a rotation or a replay is sent once (unless no connection could be opened).
"""

from __future__ import annotations

import builtins
import gzip as gzip_module
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson

from dash_ray.client.answers import Dashboard, IngestResult, Pipeline
from dash_ray.client.query import FilterArg, TimeArg, answer_table, query_params, table_columns, time_param
from dash_ray.client.sinks import SinkCalls
from dash_ray.client.stream import LiveStream
from dash_ray.client.transport import ClientSettings, clean_token, json_object, json_rows, send
from dash_ray.dashboards import Dashboard as DashboardModel
from dash_ray.dashboards import is_dashboard
from dash_ray.errors import Problem, SignatureError, SpecError
from dash_ray.ingest.signing import signature_header
from dash_ray.spec import PIPELINE_ID_PATTERN, PipelineSpec, load_document, parse_spec

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Client"]

DEFAULT_URL = "http://127.0.0.1:8000"


def _document(source: PipelineSpec | DashboardModel | Mapping[str, Any] | str | Path) -> Any:
    """What `deploy` was given, as plain data when it is a file or text: a missing file raises
    its OSError, text that does not parse a SpecError naming the file, line and column."""
    if isinstance(source, PipelineSpec):
        return source.to_json_dict()
    if isinstance(source, (DashboardModel, Mapping)):
        return source
    return load_document(source)


class Client(SinkCalls):
    """A synchronous client; use as a context manager or call `close()`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
        retries: int | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        """`token`: a bearer token (whitespace around it is dropped). `timeout` and
        `retries` override the same fields of `settings` (defaults: `ClientSettings()`)."""
        settings = settings or ClientSettings()
        if timeout is not None:
            settings = replace(settings, timeout=timeout)
        if retries is not None:
            settings = replace(settings, retries=retries)
        self.settings = settings
        headers = {"user-agent": "dash-ray-sdk"}
        token = clean_token(token, "token")
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=settings.timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        self._http.close()

    def _request(self, method: str, path: str, *, retry: bool | None = None, **kwargs: Any) -> Any:
        """The answer's JSON body, or the DashError it stands for; `retry` overrides whether
        the call may be sent again (see `transport.send`)."""
        return send(self._http, self.settings, method, path, retry=retry, **kwargs)

    # -- pipelines -------------------------------------------------------------------------

    def deploy(self, spec: PipelineSpec | DashboardModel | Mapping[str, Any] | str | Path) -> Any:
        """Create or update a pipeline from a spec object, a dict, or a YAML/JSON file path
        (or text), and return its `Pipeline`; or, when the document is a dashboard (`kind:
        dashboard` at its top, or a `widgets` key), put the dashboard and return its
        `Dashboard`. An invalid spec raises one SpecError listing every problem (the
        server checks it; without a usable `id` there is nowhere to send it, so it is
        checked here). A file that cannot be read raises its OSError."""
        document = _document(spec)
        if isinstance(document, DashboardModel) or is_dashboard(document):
            return self.put_dashboard(document)
        data = dict(document) if isinstance(document, Mapping) else document
        if not isinstance(data, dict) or not re.fullmatch(PIPELINE_ID_PATTERN, str(data.get("id", ""))):
            from dash_ray.spec_check import check_spec  # the mapping compiler: only when needed

            check_spec(data).valid()
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
        """A new ingest secret. The one it replaces stays valid for `grace_s` seconds; secrets
        retired by earlier rotations keep their own grace (at most 3 retired secrets are
        kept, the oldest dropped first); `grace_s=0` revokes every earlier secret at once."""
        body = self._request("POST", f"/v1/pipelines/{pipeline_id}/rotate-secret", params={"grace": grace_s})
        return str(body["ingest_secret"])

    # -- dashboards ------------------------------------------------------------------------

    def put_dashboard(self, dashboard: DashboardModel | Mapping[str, Any],
                      dashboard_id: str | None = None, *, create_only: bool = False) -> Dashboard:
        """Create or replace a dashboard (`{"id", "title", "widgets": [...]}`); SpecError
        naming each problem, including widgets over pipelines or fields there are not. With
        `create_only`, PreconditionFailedError (412) when the id is taken."""
        data = dashboard.to_json_dict() if isinstance(dashboard, DashboardModel) else dict(dashboard)
        data.pop("kind", None)
        dashboard_id = dashboard_id or data.get("id")
        if not dashboard_id:
            raise SpecError("invalid dashboard: id: Field required", problems=[Problem("id", "Field required")])
        data.setdefault("id", dashboard_id)
        headers = {"if-none-match": "*"} if create_only else {}
        return Dashboard.from_body(self._request("PUT", f"/v1/dashboards/{dashboard_id}", json=data, headers=headers))

    def dashboards(self) -> builtins.list[Dashboard]:
        return [Dashboard.from_body(d) for d in self._request("GET", "/v1/dashboards")["dashboards"]]

    def dashboard(self, dashboard_id: str) -> Dashboard:
        return Dashboard.from_body(self._request("GET", f"/v1/dashboards/{dashboard_id}"))

    def delete_dashboard(self, dashboard_id: str) -> None:
        self._request("DELETE", f"/v1/dashboards/{dashboard_id}")

    # -- data ------------------------------------------------------------------------------

    def ingest(
        self,
        pipeline_id: str,
        records: Mapping[str, Any] | Iterable[Any] | bytes,
        *,
        secret: str | None,
        idempotency_key: str | None = None,
        ndjson: bool | None = None,
        gzip: bool = False,
        wait: Literal["durable", "stored"] = "durable",
        wait_timeout: float = 60.0,
    ) -> IngestResult:
        """Send records, signed with `secret`; returns once they are durable (in the
        pipeline's write-ahead log: they survive a crash, and `records` shows them as soon as
        they are mapped). Queries (`query`, `query_table`) see them once a flush has stored
        them, by default within about a second (the spec's `flush`); with `wait="stored"`
        this returns only then (`wait_stored`; TimeoutError past `wait_timeout` seconds, the
        records still durable).

        `records`: one dict, an iterable of records (sent as NDJSON unless `ndjson=False`),
        or a ready body as bytes (JSON unless `ndjson=True`). Without a secret,
        SignatureError before anything is sent.

        Idempotency: each call is signed at its own microsecond, so two calls are two
        requests, stored twice even when their records are identical. The SDK's own retries
        of one call resend the same signed request, which the pipeline answers as a
        duplicate (`IngestResult.duplicate`) and does not store again; so does a call with an
        `idempotency_key` the pipeline has seen in the last hour (a random key is used when
        none is given)."""
        if secret is None or not secret.strip():
            raise SignatureError("ingest needs the pipeline's ingest secret: `deploy` returns it when it creates the "
                                 "pipeline (`Pipeline.ingest_secret`), `rotate_secret` makes a new one", where="secret")
        if wait not in ("durable", "stored"):
            raise ValueError(f"wait must be 'durable' or 'stored', not {wait!r}")
        secret = clean_token(secret, "ingest secret")
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
        result = self._request("POST", f"/v1/pipelines/{pipeline_id}/events", retry=True, content=body,
                               headers=headers)
        answer = IngestResult(
            accepted=result["accepted"],
            last_seq=result.get("last_seq"),
            rejected=result.get("rejected", []),
            duplicate=result.get("duplicate", False),
        )
        if wait == "stored" and answer.last_seq:
            self.wait_stored(pipeline_id, answer.last_seq, timeout=wait_timeout)
        return answer

    def wait_stored(self, pipeline_id: str, seq: int, *, timeout: float = 60.0) -> Pipeline:
        """Wait until every record up to `seq` is stored where queries read it: in the lake
        (the pipeline's `stored_seq`) and, for a pipeline that keeps silver in PostgreSQL,
        copied there (`silver_seq`). Returns the pipeline as last read; TimeoutError past
        `timeout` seconds (the records are durable all the same and are stored later)."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            pipeline = self.get(pipeline_id)
            counters = pipeline.counters
            stored = counters.get("stored_seq") or 0
            copied = stored
            if "silver_seq" in counters:  # PostgreSQL silver (None until its first copy)
                copied = counters["silver_seq"] or 0
            if stored >= seq and copied >= seq:
                return pipeline
            left = deadline - time.monotonic()
            if left <= 0:
                where = f"stored_seq {stored}" + (f", silver_seq {copied}" if "silver_seq" in counters else "")
                raise TimeoutError(f"pipeline {pipeline_id}: records up to seq {seq} are durable but not stored "
                                   f"after {timeout:g} s ({where}; status {pipeline.status})")
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.25)

    def records(self, pipeline_id: str, *, limit: int = 100,
                after: int | None = None) -> builtins.list[dict[str, Any]]:
        """The newest mapped records from the hot cache, oldest first: `{"seq","time","data"}`."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return json_rows(self._request("GET", f"/v1/pipelines/{pipeline_id}/records", params=params), "records")

    def query(
        self,
        pipeline_id: str,
        *,
        start: TimeArg = None,
        end: TimeArg = None,
        fields: Sequence[str] | str | None = None,
        bucket: str | None = None,
        agg: Sequence[str] | str | None = None,
        by: Sequence[str] | str | None = None,
        limit: int | None = None,
        order: str | None = None,
        after: int | None = None,
        filter: FilterArg = None,  # the API's name
    ) -> builtins.list[dict[str, Any]]:
        """Rows of the pipeline's silver store (`GET /v1/pipelines/{id}/query`; docs/API.md).

        Raw rows (no `agg`): one page of at most `limit` rows (default 1,000) ordered by
        time then seq, from `after` on; `query_pages` follows the pages. Aggregates: `agg`
        like `["avg:temp_c", "count"]`, optional `bucket` ("10s", "1m", "1h", "1d") and `by`;
        one row per bucket and group that holds rows. `start`/`end` (the API's `from`/`to`)
        take datetimes, ISO 8601 text or epoch seconds. `filter`: `{"device": ["a", "b"]}` or
        `"device:a,b"` (string/int fields equal to a value). Raises `dash_ray.QueryError` naming a
        bad parameter. Rows are there once stored: see `ingest`'s `wait`."""
        params = query_params(start, end, fields, bucket, agg, by, limit, order, after, filter)
        return json_rows(self._query(pipeline_id, params), "rows")

    def query_pages(self, pipeline_id: str, **options: Any) -> Iterator[builtins.list[dict[str, Any]]]:
        """Each page of a raw-rows query in turn, following `next` to the end."""
        params = query_params(options.pop("start", None), options.pop("end", None), options.pop("fields", None),
                               None, None, None, options.pop("limit", None), options.pop("order", None),
                               options.pop("after", None), options.pop("filter", None))
        if options:
            raise TypeError(f"unexpected options for query_pages: {', '.join(options)}")
        while True:
            page = self._query(pipeline_id, params)
            yield page["rows"]
            if page.get("next") is None:
                return
            params["after"] = page["next"]

    def query_table(self, pipeline_id: str, **options: Any) -> pa.Table:
        """`query` as a pyarrow Table (`.to_pandas()` for a DataFrame); for raw rows, every
        page up to `limit` rows in all (default: all of them). Columns are typed by the
        pipeline's spec (read first): `time` and `bucket` timestamp[us, UTC], a column of
        only nulls still its field's type, json fields as JSON text."""
        from dash_ray.silver.schema import spec_schema  # pyarrow: only here, not for the rest of the SDK

        schema = spec_schema(parse_spec(self.get(pipeline_id).spec))
        columns = table_columns({c.name: c.type for c in schema.columns}, options)
        if options.get("agg"):
            return answer_table(self.query(pipeline_id, **options), columns)
        limit = options.pop("limit", None)
        rows: list[dict[str, Any]] = []
        for page in self.query_pages(pipeline_id, limit=min(limit or 100_000, 100_000), **options):
            rows += page
            if limit is not None and len(rows) >= limit:
                rows = rows[:limit]
                break
        return answer_table(rows, columns)

    def replay(self, pipeline_id: str, *, start: TimeArg = None, end: TimeArg = None,
               received_start: TimeArg = None, received_end: TimeArg = None,
               from_seq: int | None = None, to_seq: int | None = None) -> dict[str, Any]:
        """Re-run the pipeline's current mapping over stored raw records into silver and dead
        letters, idempotently: those whose event time is in `[start, end)` (the time `query`
        filters on), or that were received in `[received_start, received_end)`, or seqs
        `from_seq..to_seq`, or all. The stored files holding them are rewritten whole; records
        whose raw data retention removed keep their stored rows. Returns the job (`{"job",
        "state", "asked", "matched", "done", "total", "replayed", "kept", "note", ...}`)."""
        body = {k: v for k, v in {"from": time_param(start), "to": time_param(end),
                                  "received_from": time_param(received_start),
                                  "received_to": time_param(received_end), "from_seq": from_seq,
                                  "to_seq": to_seq}.items() if v is not None}
        return json_object(self._request("POST", f"/v1/pipelines/{pipeline_id}/replay", json=body))

    def replay_dead(self, pipeline_id: str) -> dict[str, Any]:
        """Re-run every dead-lettered record through the current mapping; returns the job."""
        return json_object(self._request("POST", f"/v1/pipelines/{pipeline_id}/dead/replay"))

    def job(self, job_id: str) -> dict[str, Any]:
        return json_object(self._request("GET", f"/v1/jobs/{job_id}"))

    def wait_job(self, job_id: str, *, timeout: float = 300.0, every: float = 0.5) -> dict[str, Any]:
        """Poll a job until it is done or failed (TimeoutError past `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] != "running":
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still running after {timeout:.0f} s: {job['done']}/{job['total']}")
            time.sleep(every)

    def dead(self, pipeline_id: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The newest dead-lettered records, newest first, each with its rule and reason."""
        return json_rows(self._request("GET", f"/v1/pipelines/{pipeline_id}/dead", params={"limit": limit}), "dead")

    def stream(self, pipeline_id: str, *, after: int | None = None, gaps: bool = False) -> LiveStream:
        """The pipeline's live records (`{"seq", "time", "data"}`), as a sync or an async
        iterator, resuming by itself after a disconnect (`dash_ray.client.stream`). `after`: every
        record after that seq first (history), else the live tail from now."""
        return LiveStream(self.url, pipeline_id, authorization=self._http.headers.get("authorization"),
                          after=after, gaps=gaps)

    def _query(self, pipeline_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return json_object(self._request("GET", f"/v1/pipelines/{pipeline_id}/query", params=params))

    # -- platform --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return json_object(self._request("GET", "/healthz"))

    def create_token(self, scope: str, *, name: str | None = None) -> dict[str, Any]:
        """A new bearer token with `scope` (read, write or admin); its plaintext is returned once."""
        return json_object(self._request("POST", "/v1/tokens", json={"scope": scope, "name": name or scope}))

    def revoke_token(self, token_id: str) -> None:
        self._request("DELETE", f"/v1/tokens/{token_id}")

    def tokens(self) -> builtins.list[dict[str, Any]]:
        """The live (not revoked) tokens, oldest first: `{"id", "name", "scope",
        "created_at"}` each; never a token or its hash (admin)."""
        return json_rows(self._request("GET", "/v1/tokens"), "tokens")

    def put_secret(self, name: str, value: str) -> bool:
        """Create or replace the named secret `name` (admin); True when it was created. Specs
        refer to it as `{"secret": name}`; no route ever returns its value."""
        return bool(self._request("PUT", f"/v1/secrets/{name}", json={"value": value})["created"])

    def secrets(self) -> builtins.list[dict[str, Any]]:
        """Every named secret: `{"name", "created_at", "updated_at"}`, never a value (admin)."""
        return json_rows(self._request("GET", "/v1/secrets"), "secrets")

    def delete_secret(self, name: str) -> None:
        """Forget a named secret (ConflictError while a pipeline's spec refers to it)."""
        self._request("DELETE", f"/v1/secrets/{name}")
