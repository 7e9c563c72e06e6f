"""`FastProperties` decodes what paho's own `Properties` decodes, the same way, from the same
bytes (none, one of each kind, repeated user properties, a property given twice that must not
be), and the `mqtt` source's import has paho's decoder make it. Through the real broker:
tests/dash_ray/sources/test_mqtt.py (every message there is decoded by it)."""

from __future__ import annotations

from typing import Any

import pytest
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

import dash_ray.sources.mqtt  # noqa: F401 - its import installs FastProperties
from dash_ray.sources.mqtt_properties import FastProperties, install

PUBLISH = PacketTypes.PUBLISH


TOPIC = b"sensors/a/reading"
HEADER = len(TOPIC).to_bytes(2, "big") + TOPIC + (7).to_bytes(2, "big")  # topic, then message id 7


def publish_packet(properties: Properties | None, payload: bytes = b'{"n": 1}') -> bytes:
    """A QoS 1 PUBLISH's variable header and payload (what paho's decoder is given)."""
    props = properties.pack() if properties is not None else b"\x00"
    return HEADER + props + payload


def with_each_kind() -> Properties:
    p = Properties(PUBLISH)  # type: ignore[no-untyped-call]
    p.PayloadFormatIndicator = 1  # byte
    p.MessageExpiryInterval = 3600  # four-byte integer
    p.TopicAlias = 7  # two-byte integer
    p.ContentType = "application/json"  # UTF-8 string
    p.ResponseTopic = "replies/a"
    p.CorrelationData = b"\x00\x01corr"  # binary
    p.UserProperty = [("site", "north"), ("site", "south"), ("unit", "°C")]  # string pairs, repeated
    return p


def decoded(cls: type[Properties], packet: bytes) -> Any:
    original = _packet.Properties
    _packet.Properties = cls  # type: ignore[attr-defined]
    try:
        return _packet.decode_publish(0x32, packet, _packet.MQTTProtocolVersion.MQTTv5)
    finally:
        _packet.Properties = original  # type: ignore[attr-defined]


@pytest.mark.parametrize("properties", [None, with_each_kind()], ids=["none", "each-kind"])
def test_a_publish_decodes_to_what_paho_decodes(properties: Properties | None) -> None:
    packet = publish_packet(properties)
    theirs, ours = decoded(Properties, packet), decoded(FastProperties, packet)
    assert isinstance(ours.properties, FastProperties)
    assert ours.properties.json() == theirs.properties.json()
    assert str(ours.properties) == str(theirs.properties)
    assert ours.properties.isEmpty() == theirs.properties.isEmpty() == (properties is None)
    assert (ours.topic, ours.mid, ours.payload) == (theirs.topic, theirs.mid, theirs.payload) == (
        TOPIC, 7, b'{"n": 1}')
    if properties is not None:
        assert ours.properties.UserProperty == [("site", "north"), ("site", "south"), ("unit", "°C")]
        assert ours.properties.CorrelationData == b"\x00\x01corr"
        assert ours.properties.pack() == properties.pack()  # and it encodes back the same


def test_a_property_given_twice_is_refused_as_paho_refuses_it() -> None:
    once = Properties(PUBLISH)  # type: ignore[no-untyped-call]
    once.ContentType = "a"
    body = once.pack()[1:]  # without its length
    twice = bytes([2 * len(body)]) + body + body
    packet = HEADER + twice + b"{}"
    for cls in (Properties, FastProperties):
        with pytest.raises(MQTTException):
            decoded(cls, packet)


def test_one_packets_properties_never_reach_the_next() -> None:
    first = decoded(FastProperties, publish_packet(with_each_kind())).properties
    second = decoded(FastProperties, publish_packet(None)).properties
    assert not hasattr(second, "ContentType") and second.isEmpty()
    assert first.ContentType == "application/json"
    fresh = Properties(PUBLISH)  # type: ignore[no-untyped-call]
    assert (FastProperties.names, FastProperties.properties, FastProperties.types) == (
        fresh.names, fresh.properties, fresh.types)  # the shared tables are as paho builds them


def test_names_paho_refuses_are_refused_and_clear_empties() -> None:
    p = FastProperties(PUBLISH)
    with pytest.raises(MQTTException):
        p.NoSuchProperty = 1
    with pytest.raises(MQTTException):
        p.SessionExpiryInterval = 1  # not a PUBLISH property
    p.ContentType = "text/plain"
    p.clear()
    assert p.isEmpty()


def test_the_mqtt_source_has_pahos_decoder_make_fast_properties() -> None:
    assert _packet.Properties is FastProperties  # type: ignore[attr-defined]
    assert install() is True  # again: nothing changes
    assert _packet.Properties is FastProperties  # type: ignore[attr-defined]
