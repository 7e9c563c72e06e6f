"""The platform's settings: read once from the environment at the edge (the CLI) into
`Settings`; each actor and replica is then given only its own part by value (a pipeline actor
`PipelineSettings`, a web replica `WebSettings`), so the catalog's encryption key and DSN stay
with the registry. Nothing else in Dash reads `DASH_*` variables.

| variable            | default                         | meaning                                   |
|---------------------|---------------------------------|-------------------------------------------|
| DASH_HOME           | ./.dash                         | catalog, admin token, keys, write-ahead logs |
| DASH_STATE_DIR      | $DASH_HOME/wal                  | pipelines' keys, cursors, jobs, file logs |
| DASH_LOG            | file                            | the logs: `file`, `jetstream`, `postgres` |
| DASH_NATS_URL       | nats://127.0.0.1:4222           | the NATS servers (comma-separated) for DASH_LOG=jetstream |
| DASH_NATS_REPLICAS  | 1                               | copies of each log stream JetStream keeps (3 in production) |
| DASH_LOG_NAMESPACE  | (made once by `up`, kept in the | [ext] first part of every log's stream, subject or row key: |
|                     |  PostgreSQL catalog or in       | platforms sharing one NATS server or database keep apart |
|                     |  $DASH_HOME/log-namespace)      | (dash_ray.log.namespace)                  |
| DASH_LAKE_URL       | $DASH_HOME/lake                 | folder or s3://bucket/prefix for the lake |
| DASH_LAKE_ENDPOINT_URL | (AWS)                        | S3-compatible endpoint for an s3:// lake  |
| DASH_LAKE_ROOTS     | (none)                          | comma-separated folders or s3:// prefixes where a spec's |
|                     |                                 | `storage.lake` may be (the platform's lake always may) |
| DASH_PG_DSN         | (none: SQLite catalog)          | PostgreSQL for the catalog                |
| DASH_ADMIN_TOKEN    | (created in $DASH_HOME/admin.token) | the admin bearer token               |
| DASH_SECRET_KEY     | (created in $DASH_HOME/secret.key) | key encrypting secrets in the catalog  |
| DASH_HOST/DASH_PORT | 127.0.0.1 / 8000                | where the HTTP API listens (port 0: a free one, local only) |
| DASH_WEB_REPLICAS   | 1                               | ingress replicas per cluster              |
| DASH_INGRESS        | replica                         | `replica`: HTTP server in each web replica; `serve`: Serve's |
|                     |                                 | own proxy (slower, see benchmarks/ingest.py) |
| DASH_RAY_ADDRESS    | (start a local Ray)             | join an existing Ray cluster instead      |
| DASH_MAX_RESTARTS   | 5                               | restarts allowed within the window ...    |
| DASH_RESTART_WINDOW_S | 60                            | ... after which a pipeline is `failed`    |
| DASH_RESTART_BACKOFF_S | 0.5                          | first restart delay, doubling to 15 s     |
| DASH_LOG_FORMAT     | text                            | `json`: one JSON object per log line (process_logging.py) |
| DASH_QUERY_TIMEOUT_S | 15                             | a query (DuckDB or PostgreSQL) running longer stops: 422 |
| DASH_REGISTRY_OUTAGE_S | 900                          | while the registry or its catalog cannot answer, replicas |
|                     |                                 | use its last answers (pipeline info, tokens) this long |
| DASH_SHARED_HOST_PIPELINES | 250                      | [ext] pipelines per host actor for `placement: shared` |
| DASH_SINK_NICE      | 5                               | [ext] niceness added to the sink process (0 to 19): on a |
|                     |                                 | busy node delivery waits, not ingest |
| DASH_SESSION_IDLE_S | 604800 (7 days)                 | a page session unused this long ends (sliding) |
| DASH_SESSION_MAX_S  | 2592000 (30 days)               | a page session ends this long after sign-in, used or not |
| DASH_ALLOWED_ORIGINS | (none)                         | comma-separated origins (`https://ops.example.com`) besides |
|                     |                                 | the platform's own whose pages may use a page session |

On a cluster DASH_STATE_DIR is a mount every ingestor node reaches at the same path, and
DASH_LOG is `jetstream` (with DASH_NATS_URL) or `postgres` (in DASH_PG_DSN's database).

The CLI's commands other than `up`/`down` find the running platform through
`$DASH_HOME/run.json` (written by `up`), or talk to `DASH_URL` when it is set, with the token
in `DASH_TOKEN`, else `DASH_ADMIN_TOKEN`, else `$DASH_HOME/admin.token` (`ClientEnv`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = ["INGESTOR_ROLES", "LOG_KINDS", "ROLE_LABEL", "ClientEnv", "LogKind", "PipelineSettings", "RestartPolicy",
           "SessionPolicy", "Settings", "WebSettings", "ingestor_selector", "parse_port", "web_selector"]

ROLE_LABEL = "dash.io/role"
LogKind = Literal["file", "jetstream", "postgres"]  # dash_ray.log.choice
LOG_KINDS: tuple[str, ...] = get_args(LogKind)
# A Ray node label key holds one value, so a node that plays both roles (the laptop default)
# carries `dash.io/role=web-ingestor` and each selector accepts its own role or both.
BOTH_ROLES = "web-ingestor"
_ORIGIN = re.compile(r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")


def web_selector() -> dict[str, str]:
    return {ROLE_LABEL: f"in(web,{BOTH_ROLES})"}


INGESTOR_ROLES = ("ingestor", BOTH_ROLES)  # the role labels of nodes that run pipelines


def ingestor_selector() -> dict[str, str]:
    return {ROLE_LABEL: f"in({','.join(INGESTOR_ROLES)})"}


@dataclass(frozen=True)
class PipelineSettings:
    """What a pipeline actor needs: where its state folder, log and the platform's lake are,
    and the idempotency bounds. No catalog key, no DSN (a `postgres` log asks the registry
    for it at start, as PostgreSQL silver does)."""

    wal_root: str
    lake_url: str
    lake_options: dict[str, Any] | None = None
    namespace: str = "dash"
    idempotency_window_s: float = 3600.0
    idempotency_max_keys: int = 100_000
    log_format: Literal["text", "json"] = "text"
    log: LogKind = "file"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_replicas: int = 1
    log_namespace: str = ""  # the platform's (`Settings.log_prefix`); empty: `namespace`
    sink_nice: int = 5  # added to the sink process's niceness (dash_ray.pipeline.sink_process)
    sink_queue_records: int = 200_000  # mapped records a sink keeps in memory; past it, read back from the lake

    def wal_dir(self, pipeline_id: str) -> Path:
        return Path(self.wal_root) / pipeline_id

    @property
    def log_prefix(self) -> str:
        return self.log_namespace or self.namespace


@dataclass(frozen=True)
class SessionPolicy:
    """How long a page session (`dash_ray.auth.sessions`) lives: `idle_s` without use, `max_s`
    at most; `touch_s`: a use moves the idle deadline in the catalog at most this often (a
    write per session per `touch_s`); `max_per_token` live sessions of one token at most."""

    idle_s: float = 7 * 86400.0
    max_s: float = 30 * 86400.0
    touch_s: float = 60.0
    max_per_token: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.idle_s <= self.max_s:
            raise ValueError(f"a page session's idle time (DASH_SESSION_IDLE_S, {self.idle_s:g} s) must be above 0 "
                             f"and at most its lifetime (DASH_SESSION_MAX_S, {self.max_s:g} s)")
        if self.max_per_token < 1:
            raise ValueError("at least one session per token")


@dataclass(frozen=True)
class WebSettings:
    """What a web replica needs: where to listen, how to find the registry, how to check
    the admin token (its hash only), how to coalesce ingest, and where queries read."""

    host: str = "127.0.0.1"
    port: int = 8000
    namespace: str = "dash"
    admin_token_hash: str = ""
    coalesce_inflight: int = 2
    # Bytes of verified records waiting to be sent to pipelines, across this replica (429 past it).
    coalesce_waiting_bytes: int = 256 * 2**20
    # Queries read the lake, and PostgreSQL when pipelines keep silver there.
    lake_url: str = ""
    lake_options: dict[str, Any] | None = None
    pg_dsn: str | None = field(default=None, repr=False)
    # Live WebSockets: a ping this often; a peer that does not answer within it is closed.
    ws_ping_interval_s: float = 15.0
    log_format: Literal["text", "json"] = "text"
    # A local instance: the Unix socket where the replica takes the platform's listening
    # socket (dash_ray/deploy/listener.py) instead of binding the port itself.
    listener: str | None = None
    # While the registry or its catalog cannot answer, its last answers stand in this long.
    registry_outage_s: float = 900.0
    # Reads of the stores (queries, live catch-up, dead letters): their own threads, at most
    # this many waiting beside them (503 past that), each query stopped past its time limit.
    read_threads: int = 4
    read_queue: int = 16
    query_timeout_s: float = 15.0
    # Page sessions: the cookie's lifetime, and origins besides the platform's own whose
    # pages may send requests with it (`dash_ray.auth.origins`).
    session_max_s: float = SessionPolicy.max_s
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestartPolicy:
    """When the supervisor restarts a crashed pipeline (`dash_ray.supervision.policy`): the
    n-th restart within `window_s` seconds waits `min(backoff_s * 2**(n-1), max_backoff_s)`. Past
    `max_restarts` restarts within the window:

    - a pipeline that never reached `running` since it was deployed or restarted by hand is
      given up (`failed`): its spec cannot start, and retrying will not change that;
    - one that did run is in a crash loop: it is retried forever, the k-th restart of the
      loop waiting `min(max_backoff_s * 2**(k-1), crash_loop_max_backoff_s)` (about 5
      minutes at most by default).

    A pipeline that runs for `window_s` before it crashes starts again from the shortest
    back-off, out of any crash loop."""

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_s: float = 0.5
    max_backoff_s: float = 15.0
    crash_loop_max_backoff_s: float = 300.0


@dataclass(frozen=True)
class Settings:
    home: str
    lake_url: str
    lake_options: dict[str, Any] | None = None
    lake_roots: tuple[str, ...] = ()
    pg_dsn: str | None = field(default=None, repr=False)
    admin_token_hash: str = ""
    secret_key: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    web_replicas: int = 1
    ingress: Literal["replica", "serve"] = "replica"
    namespace: str = "dash"
    ray_address: str | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    health_interval_s: float = 1.0
    start_timeout_s: float = 60.0
    coalesce_inflight: int = 2
    idempotency_window_s: float = 3600.0
    idempotency_max_keys: int = 100_000
    log_format: Literal["text", "json"] = "text"
    listener: str | None = None  # set by `up` for a local instance (WebSettings.listener)
    registry_outage_s: float = 900.0
    query_timeout_s: float = 15.0
    shared_host_pipelines: int = 250  # [ext] pipelines per shared host actor (`placement: shared`)
    sink_nice: int = 5  # [ext] niceness added to the sink process (`DASH_SINK_NICE`)
    state_dir: str | None = None  # each pipeline's state folder's parent; None: $DASH_HOME/wal
    log: LogKind = "file"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_replicas: int = 1
    # What names this platform's logs in a shared backend (dash_ray.log.namespace); `up` sets it.
    log_namespace: str | None = None
    session: SessionPolicy = field(default_factory=SessionPolicy)
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"DASH_PORT must be a port number from 0 to 65535, not {self.port}")
        if self.port == 0 and self.ray_address:
            raise ValueError("DASH_PORT=0 (a free port) is for a local instance; on a cluster (DASH_RAY_ADDRESS) "
                             "every web node serves one port: set it")
        if self.ingress not in ("replica", "serve"):
            raise ValueError(f"DASH_INGRESS must be 'replica' or 'serve', not {self.ingress!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"DASH_LOG_FORMAT must be 'text' or 'json', not {self.log_format!r}")
        if self.log_namespace is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", self.log_namespace):
            raise ValueError("DASH_LOG_NAMESPACE must be 1 to 40 letters, digits, '_' or '-', "
                             f"not {self.log_namespace!r}")
        if self.shared_host_pipelines < 1:
            raise ValueError(f"DASH_SHARED_HOST_PIPELINES must be at least 1, not {self.shared_host_pipelines}")
        if not 0 <= self.sink_nice <= 19:
            raise ValueError(f"DASH_SINK_NICE must be from 0 to 19, not {self.sink_nice}")
        if self.log not in LOG_KINDS:
            raise ValueError(f"DASH_LOG must be one of {', '.join(LOG_KINDS)}, not {self.log!r}")
        if self.log == "postgres" and not self.pg_dsn:
            raise ValueError("DASH_LOG=postgres keeps the write-ahead logs in the platform's PostgreSQL: "
                             "set DASH_PG_DSN")
        if self.state_dir is not None and not Path(self.state_dir).is_absolute():
            raise ValueError(f"DASH_STATE_DIR must be an absolute folder, not {self.state_dir!r}")
        for origin in self.allowed_origins:
            if not _ORIGIN.match(origin):
                raise ValueError(f"DASH_ALLOWED_ORIGINS: {origin!r} is not an origin: http(s)://host[:port], "
                                 "no path")
        for root in self.lake_roots:
            if not root.startswith(("/", "file://", "s3://")):
                raise ValueError(f"DASH_LAKE_ROOTS: {root!r} is neither an absolute folder nor an s3:// prefix")

    @property
    def log_prefix(self) -> str:
        """The first part of every log's name (`dash_ray.log.choice.log_name`): the log
        namespace, else the Ray namespace (the names logs had before there was one)."""
        return self.log_namespace or self.namespace

    @property
    def catalog_url(self) -> str:
        return self.pg_dsn or str(Path(self.home) / "catalog.sqlite")

    def wal_dir(self, pipeline_id: str) -> Path:
        return self.pipeline().wal_dir(pipeline_id)

    def pipeline(self) -> PipelineSettings:
        """The part a pipeline actor gets."""
        return PipelineSettings(
            wal_root=self.state_dir or str(Path(self.home) / "wal"), lake_url=self.lake_url,
            lake_options=self.lake_options, namespace=self.namespace, idempotency_window_s=self.idempotency_window_s,
            idempotency_max_keys=self.idempotency_max_keys, log_format=self.log_format, log=self.log,
            nats_url=self.nats_url, nats_replicas=self.nats_replicas, log_namespace=self.log_prefix,
            sink_nice=self.sink_nice)

    def web(self) -> WebSettings:
        """The part a web replica gets."""
        return WebSettings(host=self.host, port=self.port, namespace=self.namespace,
                           admin_token_hash=self.admin_token_hash, coalesce_inflight=self.coalesce_inflight,
                           lake_url=self.lake_url, lake_options=self.lake_options, pg_dsn=self.pg_dsn,
                           log_format=self.log_format, listener=self.listener,
                           registry_outage_s=self.registry_outage_s, query_timeout_s=self.query_timeout_s,
                           session_max_s=self.session.max_s, allowed_origins=self.allowed_origins)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `DASH_*` variables (see the table above); `overrides` win."""
        env = os.environ if env is None else env
        home = Path(overrides.pop("home", None) or env.get("DASH_HOME") or ".dash").expanduser().resolve()
        lake_url = overrides.pop("lake_url", None) or env.get("DASH_LAKE_URL") or str(home / "lake")
        lake_options = overrides.pop("lake_options", None)
        endpoint = env.get("DASH_LAKE_ENDPOINT_URL")
        if lake_options is None and endpoint and lake_url.startswith("s3://"):
            lake_options = {"client_kwargs": {"endpoint_url": endpoint}}
        values: dict[str, Any] = {
            "home": str(home),
            "lake_url": lake_url,
            "lake_options": lake_options,
            "lake_roots": tuple(r.strip() for r in env.get("DASH_LAKE_ROOTS", "").split(",") if r.strip()),
            "pg_dsn": env.get("DASH_PG_DSN") or None,
            "secret_key": env.get("DASH_SECRET_KEY") or None,
            "host": env.get("DASH_HOST", "127.0.0.1"),
            "port": parse_port(env.get("DASH_PORT", "8000"), "DASH_PORT"),
            "web_replicas": _number(env, "DASH_WEB_REPLICAS", "1", int),
            "ingress": env.get("DASH_INGRESS", "replica"),
            "ray_address": env.get("DASH_RAY_ADDRESS") or None,
            "restart": RestartPolicy(
                max_restarts=_number(env, "DASH_MAX_RESTARTS", "5", int),
                window_s=_number(env, "DASH_RESTART_WINDOW_S", "60", float),
                backoff_s=_number(env, "DASH_RESTART_BACKOFF_S", "0.5", float),
            ),
            "log_format": env.get("DASH_LOG_FORMAT", "text").strip().lower() or "text",
            "registry_outage_s": float(env.get("DASH_REGISTRY_OUTAGE_S", "900")),
            "query_timeout_s": float(env.get("DASH_QUERY_TIMEOUT_S", "15")),
            "shared_host_pipelines": _number(env, "DASH_SHARED_HOST_PIPELINES", "250", int),
            "sink_nice": _number(env, "DASH_SINK_NICE", "5", int),
            "state_dir": env.get("DASH_STATE_DIR") or None,
            "log": env.get("DASH_LOG", "file").strip().lower() or "file",
            "nats_url": env.get("DASH_NATS_URL") or "nats://127.0.0.1:4222",
            "nats_replicas": _number(env, "DASH_NATS_REPLICAS", "1", int),
            "log_namespace": env.get("DASH_LOG_NAMESPACE", "").strip() or None,
            "session": SessionPolicy(idle_s=_number(env, "DASH_SESSION_IDLE_S", "604800", float),
                                     max_s=_number(env, "DASH_SESSION_MAX_S", "2592000", float)),
            "allowed_origins": tuple(o.strip() for o in env.get("DASH_ALLOWED_ORIGINS", "").split(",") if o.strip()),
        }
        values.update(overrides)
        return cls(**values)



def parse_port(text: str, name: str) -> int:
    """A TCP port from `text` (0: a free one); ValueError naming `name` (the variable or option)."""
    try:
        port = int(text.strip())
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{name} must be a port number from 0 to 65535, not {text!r}")
    return port


def _number(env: Mapping[str, str], name: str, default: str, kind: type[int] | type[float]) -> Any:
    text = env.get(name, default)
    try:
        return kind(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be {'a whole number' if kind is int else 'a number'}, not {text!r}") from None


@dataclass(frozen=True)
class ClientEnv:
    """What the CLI needs to talk to a running platform: its home (for the run file and the
    admin token file), and an explicit URL and tokens when the environment gives them."""

    home: str
    url: str | None = None
    token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientEnv:
        env = os.environ if env is None else env
        home = Path(env.get("DASH_HOME") or ".dash").expanduser().resolve()
        return cls(home=str(home), url=env.get("DASH_URL") or None, token=env.get("DASH_TOKEN") or None,
                   admin_token=env.get("DASH_ADMIN_TOKEN") or None)
