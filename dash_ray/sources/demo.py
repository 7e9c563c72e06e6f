"""The demo: a pipeline spec and the generator that feeds it readings from made-up sensors,
so `dash-ray up --demo` shows data moving with nothing else installed.

The generator is deterministic for a given seed and clock, so tests can check what it makes.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from dash_ray.ingest.batch import RawBatch
from dash_ray.sources.base import FeedContext, Ingest
from dash_ray.spec import DemoSource

__all__ = ["DEMO_ALERTS_SECRET", "DEMO_ALERTS_SPEC", "DEMO_SPEC", "DemoFeed", "DemoGenerator", "demo_alert_sink",
           "feed"]

DEMO_SPEC: dict[str, Any] = {
    "id": "demo",
    "name": "Demo sensors",
    "description": "Temperature and humidity from a few simulated sensors.",
    "source": {"kind": "demo", "rate": 5.0},
    "flush": {"records": 1000, "seconds": 5.0},
    "mapping": {
        "fields": {
            "time": {"path": "$.ts", "type": "timestamp", "unit": "ms"},
            "device": {"path": "$.device.id", "type": "string", "required": True},
            "site": {"path": "$.device.site", "type": "string", "default": "unknown"},
            "temp_c": {"path": "$.readings.temp", "type": "double"},
            "humidity": {"path": "$.readings.humidity", "type": "double"},
            "temp_f": {"expr": "round(temp_c * 9 / 5 + 32, 1)", "type": "double"},
            "status": {"expr": "CASE WHEN temp_c > 30 THEN 'hot' WHEN temp_c < 5 THEN 'cold' ELSE 'ok' END",
                       "type": "string"},
        },
        "validate": [{"field": "temp_c", "min": -50, "max": 60}],
    },
}

# Data going out: the demo's webhook sink sends each humid reading to a second pipeline of the
# same platform, which takes Standard Webhooks (the way every webhook sink signs), verified with
# its own ingest secret, kept as a named secret the sink refers to.
DEMO_ALERTS_SECRET = "demo-alerts-ingest"
DEMO_ALERTS_SPEC: dict[str, Any] = {
    "id": "demo-alerts",
    "name": "Demo alerts",
    "description": "What the demo's webhook sink 'humid' sends (humidity above 58 %), received as signed webhooks.",
    "source": {"kind": "webhook", "verify": "standard"},
    "mapping": {
        "fields": {
            "time": {"path": "$.records[0].time", "type": "timestamp"},
            "device": {"path": "$.records[0].data.device", "type": "string", "required": True},
            "site": {"path": "$.records[0].data.site", "type": "string"},
            "humidity": {"path": "$.records[0].data.humidity", "type": "double"},
            "demo_seq": {"path": "$.records[0].seq", "type": "int"},
        },
    },
}


def demo_alert_sink(hook_url: str) -> dict[str, Any]:
    """The demo's sink: one delivery per humid reading, to `hook_url` (the alerts pipeline's
    `POST /v1/hooks/demo-alerts` on this platform)."""
    return {"name": "humid", "kind": "webhook", "url": hook_url, "secret": {"secret": DEMO_ALERTS_SECRET},
            "when": "humidity > 58", "batch": {"max_records": 1, "max_wait": 1.0}}


_SITES = ("lab", "roof", "cellar")


class DemoGenerator:
    """Readings from `devices` sensors: a slow daily-like wave plus noise per sensor. About one
    reading in 200 is out of range (a glitching sensor), so the dead-letter area has something
    in it too."""

    def __init__(self, *, devices: int = 6, seed: int = 1) -> None:
        self._rng = random.Random(seed)
        self._devices = [(f"sensor-{i + 1}", _SITES[i % len(_SITES)], self._rng.uniform(-5, 5))
                         for i in range(devices)]
        self._n = 0

    def records(self, count: int, now_ms: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            device, site, offset = self._devices[self._n % len(self._devices)]
            self._n += 1
            temp = 20 + offset + 8 * math.sin(now_ms / 600_000) + self._rng.gauss(0, 0.5)
            if self._rng.random() < 0.005:
                temp = 999.0
            out.append({
                "ts": now_ms,
                "device": {"id": device, "site": site},
                "readings": {"temp": round(temp, 2), "humidity": round(self._rng.uniform(30, 60), 1)},
            })
        return out


async def feed(ingest: Ingest, *, rate: float, devices: int,
               clock: Callable[[], float] = time.time) -> None:
    """Send generated readings to `ingest` at `rate` records a second, forever (cancel to
    stop). Batches go at most ten times a second; a refused batch is dropped, as a real
    sensor would drop a reading it could not send."""
    generator = DemoGenerator(devices=devices)
    interval = max(0.1, 1.0 / rate)
    owed = 0.0
    while True:
        await asyncio.sleep(interval)
        owed += rate * interval
        count = int(owed)
        if not count:
            continue
        owed -= count
        now = clock()
        records = generator.records(count, int(now * 1000))
        payload = b"".join(orjson.dumps(r) + b"\n" for r in records)
        await ingest([RawBatch(payload=payload, count=count, received_at_us=int(now * 1e6))])


@dataclass(frozen=True)
class DemoFeed:
    """The `demo` source, a Feeder: inside the pipeline actor it feeds generated readings
    through the pipeline's own durable ingest."""

    rate: float
    devices: int
    clock: Callable[[], float] = time.time

    @classmethod
    def from_spec(cls, spec: DemoSource, context: FeedContext) -> DemoFeed:
        return cls(spec.rate, spec.devices, context.clock)

    async def run(self, ingest: Ingest) -> None:
        await feed(ingest, rate=self.rate, devices=self.devices, clock=self.clock)

    def state(self) -> dict[str, Any] | None:
        return None
