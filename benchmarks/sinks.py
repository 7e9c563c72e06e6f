"""Benchmark: sinks. One pipeline's process in plain Python (`dash_ray.pipeline.host`, no Ray,
the lake and log in a temporary folder, fsync on), in one run:

1. Deliveries per second to a local webhook receiver (aiohttp on loopback, answers 200, in a
   process of its own: its CPU is not the pipeline's): a webhook sink with `batch.max_records`
   1 (one signed POST per record) and 100.
2. Ingest throughput (records/s through the durable log and the mapping, 1,000-record
   batches, flushes to the lake on the spec's defaults) without sinks and with three sinks on:
   a webhook and a Slack sink to the local receiver, and a webhook to a port nothing listens
   on (down: every attempt fails, its retries and breaker running); once with `when`s that
   take 3% of the records each (alerts), once with 13%, 3% and 30% (more than the webhook can
   deliver: it runs flat out, its queue overflows and it reads back from the lake). The sinks
   run in the pipeline's sink process (`dash_ray.pipeline.sink_process`) on the defaults
   (`DASH_SINK_NICE`, 5); the heavy case also with niceness 0, the setting printed beside it.
   Each round opens and closes with a row without sinks; the rows with sinks take turns at
   each place between them, and each is compared with the mean of its round's two rows
   without (drift cancels); the ratios are the medians of the rounds' (goal: within 10%).
   Beside each ingest row: the CPU time of the event loop's thread per record (where ingest,
   the mapping and the hand-over to the sinks run: on a shared, noisy machine it moves less
   than the rates do), the sink process's CPU per record ingested, and the records the
   receiver got while the row ran.

    .venv/bin/python benchmarks/sinks.py [--records 2000] [--seconds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dash_ray.ingest.batch import RawBatch  # noqa: E402
from dash_ray.pipeline.host import PipelineHost  # noqa: E402
from dash_ray.pipeline.sink_process import SinkProcess  # noqa: E402
from dash_ray.settings import PipelineSettings  # noqa: E402

FIELDS = {"device": {"path": "$.device", "type": "string"}, "temp_c": {"path": "$.temp", "type": "double"}}
SECRETS = {"hook-key": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}


def _serve(requests: Any, records: Any, ports: Any) -> None:
    """The receiver's process: an aiohttp server on loopback answering 200, counting."""
    async def hook(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        requests.value += 1
        records.value += len(body.get("records", [])) or 1
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(serve())


class Receiver:
    """A webhook receiver in a process of its own (what it costs is not the pipeline's)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._requests = context.Value("q", 0, lock=False)
        self._records = context.Value("q", 0, lock=False)
        ours, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(self._requests, self._records, theirs), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{ours.recv()}/hook"

    @property
    def requests(self) -> int:
        return int(self._requests.value)

    @property
    def records(self) -> int:
        return int(self._records.value)

    def stop(self) -> None:
        self._process.terminate()
        self._process.join()


def batch(start: int, count: int) -> RawBatch:
    payload = b"".join(orjson.dumps({"device": f"d{i % 50}", "temp": 20 + i % 30}) + b"\n"
                       for i in range(start, start + count))
    return RawBatch(payload=payload, count=count, received_at_us=time.time_ns() // 1000)


async def host_with(folder: Path, sinks: list[dict[str, Any]], pipeline_id: str,
                    nice: int = PipelineSettings.sink_nice) -> PipelineHost:
    settings = PipelineSettings(wal_root=str(folder / "wal"), lake_url=str(folder / "lake"), sink_nice=nice)
    host = PipelineHost({"id": pipeline_id, "mapping": {"fields": FIELDS}, "sinks": sinks}, settings,
                        address="127.0.0.1")

    async def no_dsn() -> str | None:
        return None

    async def secrets() -> dict[str, str]:
        return SECRETS
    await host.start(no_dsn, secrets)
    return host


async def deliveries(folder: Path, receiver: Receiver, records: int, per_delivery: int) -> tuple[float, float]:
    """(deliveries/s, records/s) from the first ingest to the last delivery."""
    sink = {"name": "hook", "kind": "webhook", "url": receiver.url, "secret": {"secret": "hook-key"},
            "batch": {"max_records": per_delivery, "max_wait": 0.01}}
    host = await host_with(folder, [sink], f"deliver-{per_delivery}")
    before_requests, before_records = receiver.requests, receiver.records
    started = time.perf_counter()
    try:
        for start in range(0, records, 1000):
            await host.core.ingest([batch(start, min(1000, records - start))])
        while receiver.records - before_records < records:
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
    finally:
        await host.stop()
    return (receiver.requests - before_requests) / seconds, records / seconds


def cpu_s(pid: int | None) -> float:
    """User and system CPU seconds of process `pid` so far (0 for none)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ingest_rate(folder: Path, sinks: list[dict[str, Any]], seconds: float, name: str, receiver: Receiver,
                      nice: int = PipelineSettings.sink_nice) -> tuple[float, float, float, int]:
    """(records/s, CPU µs per record of the event loop's thread (the benchmark's own batches
    included), CPU µs per record of the sink process, records delivered meanwhile)."""
    host = await host_with(folder, sinks, name, nice)
    child = SinkProcess.of_loop().pid if sinks else None
    n, delivered = 0, receiver.records
    started, cpu, child_cpu = time.perf_counter(), time.thread_time(), cpu_s(child)
    try:
        while time.perf_counter() - started < seconds:
            await host.core.ingest([batch(n, 1000)])
            n += 1000
        rate, cpu = n / (time.perf_counter() - started), (time.thread_time() - cpu) / n * 1e6
        child_cpu = (cpu_s(child) - child_cpu) / n * 1e6
        delivered = receiver.records - delivered
    finally:
        await host.stop()
    return rate, cpu, child_cpu, delivered


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def main(args: argparse.Namespace) -> None:
    receiver = Receiver()
    down = f"http://127.0.0.1:{free_port()}/hook"
    # temp_c runs 20..49: `> 48` selects 1 record in 30, `> 45` 4 in 30, `> 40` 9 in 30.
    def three(hook: str, ops: str, down_when: str) -> list[dict[str, Any]]:
        return [
            {"name": "hook", "kind": "webhook", "url": receiver.url, "when": hook, "secret": {"secret": "hook-key"}},
            {"name": "ops", "kind": "slack", "url": receiver.url, "when": ops, "group_by": ["device"],
             "group_wait": 1, "group_interval": 5},
            {"name": "down", "kind": "webhook", "url": down, "when": down_when,
             "retry": {"schedule": [0.5] * 6, "breaker_failures": 5, "breaker_open": 2}},
        ]
    configs = {"without": [], "alerts": three("temp_c > 48", "temp_c > 48", "temp_c > 48"),
               "heavy": three("temp_c > 45", "temp_c > 48", "temp_c > 40"),
               "heavy-nice0": three("temp_c > 45", "temp_c > 48", "temp_c > 40")}
    figures: dict[str, list[float]] = {f"{c}{part}": [] for c in configs for part in ("", "-cpu", "-child", "-out")}
    figures.update(d1=[], d100=[], r100=[])
    ratios: dict[str, list[float]] = {c: [] for c in configs if c != "without"}
    with tempfile.TemporaryDirectory(prefix="dash-bench-sinks-") as tmp:
        for round_no in range(args.repeat):
            folder = Path(tmp) / f"r{round_no}"
            figures["d1"].append((await deliveries(folder / "d1", receiver, args.records, 1))[0])
            d100, r100 = await deliveries(folder / "d100", receiver, args.records * 10, 100)
            figures["d100"].append(d100)
            figures["r100"].append(r100)
            # A row without sinks opens and closes each round; the rows with sinks between them
            # take turns at each place. Each is compared with the mean of its round's two.
            turns = [c for c in configs if c != "without"]
            turns = turns[round_no % len(turns):] + turns[:round_no % len(turns)]
            rates: dict[str, float] = {}
            for place, which in enumerate(["without", *turns, "without"]):
                nice = 0 if "nice0" in which else PipelineSettings.sink_nice
                rate, cpu, child, out = await ingest_rate(folder / f"{which}-{place}", configs[which], args.seconds,
                                                          f"ingest-{which}-{place}", receiver, nice)
                rates[which] = (rates[which] + rate) / 2 if which in rates else rate
                figures[which].append(rate)
                figures[f"{which}-cpu"].append(cpu)
                figures[f"{which}-child"].append(child)
                figures[f"{which}-out"].append(out)
            for which in turns:
                ratios[which].append(rates[which] / rates["without"])
    receiver.stop()
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"\nSinks, one pipeline process in plain Python, {args.repeat} round(s), medians; load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print("| measure | figure | event loop's CPU per record | sink process's CPU per record | records delivered "
          "meanwhile |")
    print("|---|---|---|---|---|")
    print(f"| webhook deliveries/s, 1 record each (signed POST, loopback) | {med['d1']:,.0f} | | | |")
    print(f"| webhook deliveries/s, 100 records each | {med['d100']:,.0f} ({med['r100']:,.0f} records/s) | | | |")
    rows = (("without", "without sinks"), ("alerts", "three sinks (one down), each taking 3% of the records"),
            ("heavy", "three sinks (one down) taking 13%, 3% and 30%"),
            ("heavy-nice0", "the same, DASH_SINK_NICE=0 (changed)"))
    for which, what in rows:
        print(f"| ingest records/s, {what} | {med[which]:,.0f} | {med[f'{which}-cpu']:.2f} µs | "
              f"{med[f'{which}-child']:.2f} µs | {med[f'{which}-out']:,.0f} |")
    each = {k: " ".join(f"{r:.2f}" for r in v) for k, v in ratios.items()}
    print(f"\nRatios with sinks / without (goal >= 0.90), each row against the mean of its round's two rows "
          f"without sinks, median of {args.repeat} rounds (each round's in brackets): "
          f"alerts {statistics.median(ratios['alerts']):.2f} ({each['alerts']}), "
          f"heavy {statistics.median(ratios['heavy']):.2f} ({each['heavy']}), "
          f"heavy at nice 0 {statistics.median(ratios['heavy-nice0']):.2f} ({each['heavy-nice0']}); "
          f"event loop's CPU per record, without / alerts = {med['without-cpu'] / med['alerts-cpu']:.2f}, "
          f"without / heavy = {med['without-cpu'] / med['heavy-cpu']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="records for the 1-per-delivery row")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of ingest per row and round")
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
