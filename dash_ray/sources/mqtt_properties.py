"""paho-mqtt's MQTT 5 properties, decoded without rebuilding their tables per packet.

paho-mqtt (2.x) makes a `Properties` object for every PUBLISH it reads, and each one builds
its three lookup tables (28 names, 28 property kinds) before decoding what is usually no
property at all, then clears itself by trying every name: about a third of the CPU an `mqtt`
pipeline spends per message (benchmarks/mqtt.py, profiled with py-spy). `FastProperties` is
the same class with those tables built once and shared (nothing in paho writes to them), so
each packet's object costs an attribute or two. `install()` has paho's packet decoder make
these for every packet it decodes properties of (PUBLISH, the acknowledgements, DISCONNECT:
the tables are the same for every packet type); it changes nothing when paho's layout is not
the one this was written for (the decoder then keeps its own class).

Tested against paho's own class on the same bytes: tests/dash_ray/sources/test_mqtt_properties.py.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["FastProperties", "install"]

_TABLES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


class FastProperties(Properties):
    """`Properties` whose name and kind tables are the class's (read-only), not built anew."""

    types = _TABLES.types
    names = _TABLES.names
    properties = _TABLES.properties
    _compressed = tuple(name.replace(" ", "") for name in _TABLES.names)

    def __init__(self, packetType: int) -> None:  # paho's parameter name
        object.__setattr__(self, "packetType", packetType)

    def clear(self) -> None:
        values = self.__dict__
        for name in self._compressed:
            values.pop(name, None)


def install() -> bool:
    """Have paho's packet decoder (`paho.mqtt._packet`) make `FastProperties`; whether it
    does now. Idempotent."""
    try:
        from paho.mqtt import _packet
    except ImportError:  # another paho layout: keep its own
        return False
    packet: Any = _packet
    if getattr(packet, "Properties", None) is Properties:
        packet.Properties = FastProperties
    return getattr(packet, "Properties", None) is FastProperties
