"""The JetStream stream behind a pipeline's log (`jetstream.py`): its names, creating it,
publishing to it and reading the stream's answer, reading it back in order, purging it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Names", "ensure_stream", "load_nats", "messages", "publish", "purge", "stream_name"]

WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed Nats-Expected-Last-*-Sequence


def stream_name(name: str) -> str:
    return f"DASH_WAL_{name}"


def load_nats() -> Any:
    try:
        import nats
    except ImportError as exc:  # pragma: no cover - the cluster extra is installed in tests
        raise ImportError("the JetStream write-ahead log needs nats-py: pip install 'dash-ray[cluster]'") from exc
    return nats


@dataclass(frozen=True)
class Names:
    """Where a log lives: its stream (its own, `DASH_WAL_<log>`, or one shared by many logs)
    and its one subject there, `dash.wal.<stream>.<log>`, which holds its owner markers and its
    entry messages. A stream's subjects are `dash.wal.<stream>.>`, so streams never overlap."""

    log: str
    shared: str | None = None

    @property
    def stream(self) -> str:
        return self.shared or stream_name(self.log)

    @property
    def subject(self) -> str:
        return f"dash.wal.{self.stream}.{self.log}"


async def ensure_stream(js: Any, names: Names, *, replicas: int, server: Any) -> None:
    """Create the stream when it is missing: file storage, `replicas` copies, no limits (the
    log trims it). An existing stream is left as it is (its replicas are the operator's).
    Raises OSError for a shared stream with more than one replica on a NATS (`server`, its
    version) before 2.10: the per-subject fence does not hold there (`jetstream.py`)."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    try:
        info = await js.stream_info(names.stream)
    except NotFoundError:
        config = StreamConfig(name=names.stream, subjects=[f"dash.wal.{names.stream}.>"], storage=StorageType.FILE,
                              num_replicas=replicas, retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD)
        try:
            info = await js.add_stream(config)
        except BadRequestError:  # another owner created it first (same config, or it says why)
            info = await js.stream_info(names.stream)
    copies = info.config.num_replicas or 1
    if names.shared and copies > 1 and (server.major, server.minor) < (2, 10):
        raise OSError(f"write-ahead log {names.log}: the shared stream {names.stream} has {copies} replicas, and "
                      f"NATS {server} does not fence an older owner in it (it checks "
                      "Nats-Expected-Last-Subject-Sequence before the stream's servers agree on the order): "
                      "use NATS 2.10 or newer, or a stream of the log's own")


async def publish(nc: Any, subject: str, payload: bytes, *, timeout: float,
                  headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Publish one message and return the stream's answer: `{"seq": ...}` once it is stored,
    or `{"error": {...}}` when it was refused. Raises OSError when no answer comes in time."""
    try:
        reply = await nc.request(subject, payload, timeout=timeout, headers=headers)
    except Exception as exc:
        raise OSError(f"no acknowledgement for a message to {subject}: {exc!r}") from exc
    try:
        body = json.loads(reply.data) if reply.data else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not (body.get("seq") or body.get("error")):
        status = (reply.headers or {}).get("Status", "no reply")  # 503: no stream listens
        return {"error": {"description": f"status {status}: no stream took the message to {subject}"}}
    return body


async def messages(js: Any, names: Names, *, before: int, timeout: float) -> AsyncIterator[Any]:
    """The log's messages with a sequence below `before` (which must be one of them), in
    order, read by an ordered consumer."""
    from nats.js.api import DeliverPolicy

    sub = await js.subscribe(names.subject, stream=names.stream, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.ALL)
    try:
        while True:
            msg = await sub.next_msg(timeout=timeout)
            if msg.metadata.sequence.stream >= before:
                return
            yield msg
            if msg.metadata.num_pending == 0:
                return
    finally:
        try:
            await sub.unsubscribe()
        except Exception:  # noqa: BLE001 - the connection may be gone; the consumer expires
            pass


async def purge(nc: Any, names: Names, request: dict[str, Any], *, timeout: float) -> int:
    """Purge by a JetStream purge request (`filter`, `seq` below which, `keep`); the count."""
    reply = await nc.request(f"$JS.API.STREAM.PURGE.{names.stream}", json.dumps(request).encode(), timeout=timeout)
    body = json.loads(reply.data)
    if not body.get("success"):
        raise OSError(f"purging stream {names.stream} ({request}) was refused: {body.get('error')}")
    return int(body.get("purged", 0))
