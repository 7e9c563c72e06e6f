"""Benchmark: MQTT messages a second that an `mqtt` pipeline takes and acknowledges durably
(PUBACK only after the batch holding a message is in the pipeline's fsynced log), beside
`mosquitto_sub` writing the same messages to /dev/null, in the same run, on the same broker.

    apt-get install mosquitto mosquitto-clients
    .venv/bin/python benchmarks/mqtt.py [--messages 50000] [--repeat 3] [--quick]

What runs: a private Mosquitto on a free loopback port (so nothing else on the machine shares
it; `max_queued_messages` raised so the broker never drops what a subscriber has not taken
yet), one publisher (`mosquitto_pub -l -q 1`, C, one message per line of a file), and per row
one subscriber at QoS 1:
- publish only: no subscriber (the publisher's own ceiling);
- mosquitto_sub: `mosquitto_sub -q 1 -C N > /dev/null` (C, acks on receipt, stores nothing);
- dash mqtt: the pipeline's process in plain Python (`PipelineHost`, what the pipeline actor
  runs, without Ray), with its default `batch` (1,000) and flush settings; the time is to the
  N-th message's PUBACK, sent after its durable append (`source_state.acked`).
Each row's clock starts when the publisher starts and stops when the subscriber has all N.
Rows alternate, `--repeat` rounds; figures are medians; the ratio is against mosquitto_sub
of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dash_ray.pipeline.host import PipelineHost  # noqa: E402
from dash_ray.settings import PipelineSettings  # noqa: E402

MAPPING = {"fields": {
    "time": {"path": "$.ts", "type": "timestamp", "unit": "ms"},
    "device": {"path": "$.device", "type": "string", "required": True},
    "temp_c": {"path": "$.temp", "type": "double"},
    "topic": {"path": "$._topic", "type": "string"},
}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 10000000\nmax_inflight_messages 0\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return broker, port
        time.sleep(0.05)
    broker.kill()
    raise RuntimeError("mosquitto did not start")


def write_messages(path: Path, count: int) -> None:
    with path.open("wb") as f:
        for i in range(count):
            f.write(orjson.dumps({"ts": 1_767_225_600_000 + i, "device": f"sensor-{i % 50}",
                                  "temp": 20 + (i % 17) / 3}) + b"\n")


async def publish(port: int, topic: str, messages: Path) -> float:
    """Publish every line of `messages`; the time the publisher took."""
    started = time.perf_counter()
    with messages.open("rb") as lines:
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, "-l", stdin=lines)
        await proc.wait()
    return time.perf_counter() - started


async def row_publish_only(port: int, messages: Path, count: int) -> float:
    return count / await publish(port, f"bench/{uuid.uuid4().hex[:8]}/none", messages)


async def row_mosquitto_sub(port: int, messages: Path, count: int) -> float:
    topic = f"bench/{uuid.uuid4().hex[:8]}/x"
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, "-C", str(count),
        stdout=subprocess.DEVNULL)
    await asyncio.sleep(0.5)  # a subscriber's start: nothing says when it has subscribed
    started = time.perf_counter()
    await publish(port, topic, messages)
    await asyncio.wait_for(sub.wait(), 600)
    return count / (time.perf_counter() - started)


async def row_dash(port: int, messages: Path, count: int, home: Path) -> float:
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    pipeline_id = f"mqtt-{uuid.uuid4().hex[:6]}"
    spec = {"id": pipeline_id, "mapping": MAPPING,
            "source": {"kind": "mqtt", "url": f"mqtt://127.0.0.1:{port}", "topics": [f"{prefix}/#"]}}
    settings = PipelineSettings(wal_root=str(home / "wal"), lake_url=str(home / "lake"))
    host = PipelineHost(spec, settings, address="127.0.0.1")

    async def no_dsn() -> str | None:
        return None

    await host.start(no_dsn)
    try:
        while not (host.health().get("source_state") or {}).get("connected"):
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        publisher = asyncio.ensure_future(publish(port, f"{prefix}/x", messages))
        while True:
            state = host.health()["source_state"]
            if state["acked"] >= count:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        await publisher
        counters = host.health()["counters"]
        assert counters["accepted"] == count, counters
        return count / elapsed
    finally:
        await host.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10,000 messages, one round")
    args = parser.parse_args()
    count, repeat = (10_000, 1) if args.quick else (args.messages, args.repeat)
    for tool in ("mosquitto", "mosquitto_pub", "mosquitto_sub"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install mosquitto mosquitto-clients")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        folder = Path(tmp)
        broker, port = start_broker(folder)
        try:
            messages = folder / "messages.ndjson"
            write_messages(messages, count)
            rows: dict[str, list[float]] = {"publish only (no subscriber)": [], "mosquitto_sub > /dev/null": [],
                                            "dash mqtt, acked after fsync": []}
            for round_no in range(repeat):
                rows["publish only (no subscriber)"].append(await row_publish_only(port, messages, count))
                rows["mosquitto_sub > /dev/null"].append(await row_mosquitto_sub(port, messages, count))
                rows["dash mqtt, acked after fsync"].append(
                    await row_dash(port, messages, count, folder / f"home-{round_no}"))
        finally:
            broker.terminate()
            broker.wait(10)
    baseline = statistics.median(rows["mosquitto_sub > /dev/null"])
    print(f"\nMQTT QoS 1, {count:,} messages of ~70 bytes, {repeat} round(s), medians "
          f"({os.cpu_count()} cores, mosquitto on loopback)\n")
    print(f"| {'row':<32} | {'messages/s':>11} | {'vs mosquitto_sub':>16} |")
    print(f"|{'-' * 34}|{'-' * 13}:|{'-' * 17}:|")
    for name, values in rows.items():
        rate = statistics.median(values)
        print(f"| {name:<32} | {rate:>11,.0f} | {rate / baseline:>15.2f}x |")


if __name__ == "__main__":
    asyncio.run(main())
