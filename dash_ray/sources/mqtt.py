"""The `mqtt` source: a subscription to an MQTT broker, fed through the pipeline's durable
ingest, inside the pipeline actor.

- MQTT 5 over a persistent session (clean start off, a session expiry, a client id stable
  across restarts: `dash-<pipeline id>` unless given), so what is published while the
  pipeline restarts waits at the broker.
- At QoS 1 a message is acknowledged (PUBACK) only after the batch holding it is durable:
  paho-mqtt's `manual_ack`. Messages are batched (up to `batch`, what has arrived) and the
  whole batch is acknowledged after its one append.
- A message sent again after a crash is recognised and not stored twice
  (`dash_ray.sources.mqtt_journal` says how and where that can fail).
- Each message's JSON payload is a record; a JSON array, a record per element. An object
  record gets the topic under `topic_key` (default `_topic`; a key of the payload's own of
  that name is kept). A payload that is not JSON (or not UTF-8) is stored as a JSON string,
  which the mapping dead-letters with its text, without holding up the rest.
- Connection loss: reconnect with exponential back-off and jitter (0.5 s to 30 s).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from dash_ray.ingest.batch import RawBatch, Rejections
from dash_ray.sources.base import FeedContext, Ingest, iso_utc
from dash_ray.sources.durable import append_until_stored
from dash_ray.sources.mqtt_journal import Journal, digest
from dash_ray.sources.mqtt_properties import install as install_fast_properties
from dash_ray.spec import MqttSource, MqttTls

__all__ = ["MqttFeed", "client_id_of", "end_session", "records_of"]

log = logging.getLogger(__name__)

install_fast_properties()  # a third less CPU per message (mqtt_properties.py)

NOT_JSON = "MQTT payload is not JSON"
_MAX_BACKOFF_S = 30.0


def records_of(topic: str, payload: bytes, topic_key: str | None) -> tuple[list[bytes], bool]:
    """The NDJSON lines (without newline) of one message, and whether its payload was JSON."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return [orjson.dumps(payload.decode("utf-8", "replace"))], False
    values = value if isinstance(value, list) else [value]
    if topic_key is not None:
        values = [{topic_key: topic, **v} if isinstance(v, dict) else v for v in values]
    return [orjson.dumps(v) for v in values], True


@dataclass
class _State:
    connected: bool = False
    last_message_at: float | None = None
    last_ok_at: float | None = None
    messages: int = 0
    acked: int = 0
    records: int = 0
    not_json: int = 0
    redelivered_skipped: int = 0
    connects: int = 0
    last_error: str | None = None
    pending: int = 0


@dataclass
class MqttFeed:
    """The `mqtt` source, a Feeder."""

    spec: MqttSource
    context: FeedContext
    clock: Callable[[], float] = time.time
    _state: _State = field(default_factory=_State)

    @classmethod
    def from_spec(cls, spec: MqttSource, context: FeedContext) -> MqttFeed:
        return cls(spec, context, context.clock)

    @property
    def client_id(self) -> str:
        return client_id_of(self.spec, self.context.pipeline_id)

    @property
    def window(self) -> int:
        """The broker's most unacknowledged messages in flight to us (MQTT 5 Receive Maximum):
        two batches, so one fills while the other is appended."""
        return min(2 * self.spec.batch, 65_535)

    def state(self) -> dict[str, Any] | None:
        s = self._state
        return {"connected": s.connected, "last_message_at": iso_utc(s.last_message_at),
                "last_ok_at": iso_utc(s.last_ok_at), "messages": s.messages, "acked": s.acked, "records": s.records,
                "not_json": s.not_json, "redelivered_skipped": s.redelivered_skipped,
                "connects": s.connects, "pending": s.pending, "last_error": s.last_error}

    async def run(self, ingest: Ingest) -> None:
        journal = await asyncio.to_thread(Journal.load, self.context.state_dir / "mqtt.journal", self.window)
        if journal.pending is not None:
            # The last run may have stopped during this append: again under its key (once either way).
            await self._append(ingest, journal.pending.batch)
            journal.stored()
        try:
            backoff = 0.5
            while True:
                connects = self._state.connects
                try:
                    await self._session(ingest, journal)
                except aiomqtt.MqttError as exc:
                    self._state.last_error = f"{type(exc).__name__}: {exc}"
                except Exception as exc:
                    log.exception("mqtt %s: the session failed", self.spec.url)
                    self._state.last_error = f"{type(exc).__name__}: {exc}"
                finally:
                    self._state.connected = False
                if self._state.connects > connects:
                    backoff = 0.5  # it had connected: start the back-off again
                delay = backoff * (0.5 + random.random() / 2)
                log.info("mqtt %s: disconnected (%s); reconnecting in %.1f s", self.spec.url,
                         self._state.last_error, delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        finally:
            journal.close()

    async def _session(self, ingest: Ingest, journal: Journal) -> None:
        client = self._client()
        paho: Any = client._client
        paho.manual_ack_set(True)
        # paho's own message object, which carries `dup` (aiomqtt's Message drops it).
        paho.on_message = lambda _c, _u, message: client._queue.put_nowait(message)
        async with client:
            retained_once = SubscribeOptions(qos=self.spec.qos, retainHandling=1)
            await client.subscribe([(topic, retained_once) for topic in self.spec.topics])
            await self._drop_old_topics(client)
            self._state.connected, self._state.last_error = True, None  # and subscribed
            self._state.connects += 1
            messages, queue = client.messages, client._queue
            while True:
                batch = [await anext(messages)]
                while len(batch) < self.spec.batch and not queue.empty():
                    batch.append(queue.get_nowait())
                await self._take(ingest, journal, batch)
                for message in batch:
                    if message.qos > 0:
                        paho.ack(message.mid, message.qos)
                self._state.acked += len(batch)

    async def _drop_old_topics(self, client: aiomqtt.Client) -> None:
        """The session outlives a spec: unsubscribe the filters an earlier version subscribed
        that this one no longer has (kept in `mqtt.topics` in the state folder)."""
        path = self.context.state_dir / "mqtt.topics"
        before = orjson.loads(path.read_bytes()) if path.exists() else {}
        gone = [t for t in before.get("topics", []) if t not in self.spec.topics]
        if gone and before.get("client_id") == self.client_id:
            await client.unsubscribe(gone)
        if gone or before.get("topics") != self.spec.topics or before.get("client_id") != self.client_id:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(orjson.dumps({"client_id": self.client_id, "topics": self.spec.topics}))

    async def _take(self, ingest: Ingest, journal: Journal, messages: list[Any]) -> None:
        """Store one batch of messages durably (those sent again and already stored are skipped)."""
        now = self.clock()
        state = self._state
        state.messages += len(messages)
        state.last_message_at = now
        lines: list[bytes] = []
        digests: list[str] = []
        bad: list[int] = []
        for message in messages:
            topic, payload = message.topic, message.payload
            key = digest(topic, payload)
            if message.qos > 0 and message.dup and journal.seen(key):
                state.redelivered_skipped += 1
                continue
            records, is_json = records_of(topic, payload, self.spec.topic_key)
            if not is_json:
                bad.append(len(lines))
                state.not_json += 1
            lines += records
            digests.append(key)
        if not digests:
            return
        state.records += len(lines)
        batch = RawBatch(payload=b"".join(line + b"\n" for line in lines), count=len(lines),
                         received_at_us=int(now * 1e6), idempotency_key=f"mqtt:{uuid.uuid4().hex}",
                         rejected=Rejections.of(bad, NOT_JSON))
        journal.begin(batch, digests)  # a line appended to a file, not fsynced: no thread hop
        await self._append(ingest, batch)
        journal.stored()

    async def _append(self, ingest: Ingest, batch: RawBatch) -> None:
        """Until the pipeline has stored `batch` durably; nothing is acked to the broker
        meanwhile, so it holds what follows."""
        state = self._state
        state.pending = batch.count
        await append_until_stored(ingest, batch, lambda error: setattr(state, "last_error", error))
        state.pending, state.last_ok_at = 0, self.clock()

    def _client(self) -> aiomqtt.Client:
        password = self.context.secrets.get(self.spec.password.secret) if self.spec.password else None
        return _client(self.spec, self.client_id, password, session_expiry=self.spec.session_expiry,
                       receive_maximum=self.window)


def client_id_of(spec: MqttSource, pipeline_id: str) -> str:
    """The client id (and so the broker's session) a pipeline's mqtt source connects with."""
    return spec.client_id or f"dash-{pipeline_id}"


async def end_session(spec: MqttSource, pipeline_id: str, secrets: dict[str, str]) -> None:
    """Make the broker discard the pipeline's persistent session (a purged pipeline): connect
    with its client id, clean start on and a session expiry of 0, and leave. Without it the
    broker keeps queueing what is published to its topics for `session_expiry` seconds, and
    a pipeline created again under the same id would receive it. Raises aiomqtt.MqttError
    when the broker cannot be reached."""
    password = secrets.get(spec.password.secret) if spec.password else None
    async with _client(spec, client_id_of(spec, pipeline_id), password, session_expiry=0, clean_start=True):
        pass


def _client(spec: MqttSource, client_id: str, password: str | None, *, session_expiry: int,
            receive_maximum: int | None = None, clean_start: bool = False) -> aiomqtt.Client:
    url = urlsplit(spec.url)
    secure = url.scheme == "mqtts" or spec.tls is not False
    connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    connect.SessionExpiryInterval = session_expiry
    if receive_maximum is not None:
        connect.ReceiveMaximum = receive_maximum
    return aiomqtt.Client(
        url.hostname or "127.0.0.1", url.port or (8883 if secure else 1883),
        identifier=client_id, username=spec.username, password=password,
        protocol=aiomqtt.ProtocolVersion.V5, clean_start=clean_start, properties=connect,
        tls_context=_tls(spec.tls) if secure else None, keepalive=30, timeout=10)


def _tls(option: bool | MqttTls) -> ssl.SSLContext:
    options = option if isinstance(option, MqttTls) else MqttTls()
    context = ssl.create_default_context(cafile=options.ca)
    if options.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

