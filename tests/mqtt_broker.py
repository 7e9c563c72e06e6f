"""The Mosquitto broker the MQTT tests use (127.0.0.1:1883, started by .ci/run when it is not
running): a publisher over paho-mqtt, and a topic prefix of each test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import orjson
import paho.mqtt.client as paho
import pytest

__all__ = ["BROKER", "Publisher", "unique_prefix"]

BROKER = ("127.0.0.1", 1883)


def unique_prefix() -> str:
    return f"dash-test/{uuid.uuid4().hex[:10]}"


class Publisher:
    """A QoS 1 publisher: every `publish` returns once the broker has acknowledged it."""

    def __init__(self) -> None:
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        try:
            self._client.connect(*BROKER)
        except OSError as exc:
            pytest.fail(f"no MQTT broker on {BROKER[0]}:{BROKER[1]} (start mosquitto; .ci/run does): {exc}")
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes | object, *, qos: int = 1) -> None:
        self.publish_many(topic, [payload], qos=qos)

    def publish_many(self, topic: str, payloads: Iterable[bytes | object], *, qos: int = 1) -> None:
        infos = [self._client.publish(topic, p if isinstance(p, bytes) else orjson.dumps(p), qos=qos)
                 for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=30)
            assert info.is_published(), "the broker did not acknowledge a publish"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
