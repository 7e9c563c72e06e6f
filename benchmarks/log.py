"""Benchmark: the write-ahead log backends side by side: acknowledged records/s and append latency.

    .venv/bin/python benchmarks/log.py [--seconds 2] [--rounds 3] [--quick]
        [--backends file,jetstream,jetstream-r3,postgres]

Backends: the file log (fdatasync per group, in a temporary folder), NATS JetStream (a stream
of one replica on the server at --nats, file storage), optionally `jetstream-r3` (three
replicas on a three-server cluster this benchmark starts on loopback and stops, all on this
machine) and PostgreSQL (a fresh database on the server at --pg, dropped afterwards;
synchronous_commit as the server has it). Each cell runs
N appenders on one event loop, each awaiting one append after another, for `--seconds`; an
append carries a batch of 1 or 100 records of ~200 bytes (200 B or 20 kB). Figures are
acknowledged records/s over the cell, and p50/p99 of one append's latency (call to resolved
future); each is the median over `--rounds` rounds, each round on a fresh log. Ratios are
against the file log's cell. Everything shares this machine's cores and disk with the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from dash_ray.log.base import Log
from dash_ray.log.file import WriteAheadLog
from dash_ray.log.jetstream import JetStreamLog
from dash_ray.log.postgres import PostgresLog

RECORD = b'{"ts":"2026-01-01T00:00:00Z","device":{"id":"sensor-17","site":"north"},' \
         b'"readings":{"temp":21.5,"humidity":40.1},"status":"ok","note":"' + b"x" * 68 + b'"}\n'
APPENDERS = (1, 8, 64)
BATCHES = (1, 100)


@dataclass
class Cell:
    records_s: float
    p50_ms: float
    p99_ms: float


async def run_cell(log: Log, appenders: int, batch: int, seconds: float) -> Cell:
    await asyncio.to_thread(log.open)
    data = RECORD * batch
    key = 0
    latencies: list[float] = []
    stop = 0.0

    async def appender() -> None:
        nonlocal key
        while time.perf_counter() < stop:
            key += 1
            start = time.perf_counter()
            await log.append(key, data)
            latencies.append(time.perf_counter() - start)

    stop = time.perf_counter() + min(0.3, seconds / 4)  # warm up: connections, first segment
    await asyncio.gather(*(appender() for _ in range(appenders)))
    latencies.clear()
    began = time.perf_counter()
    stop = began + seconds
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = time.perf_counter() - began
    await log.close()
    latencies.sort()
    return Cell(len(latencies) * batch / elapsed, 1000 * latencies[len(latencies) // 2],
                1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])


@contextlib.contextmanager
def nats_cluster(root: Path) -> Iterator[list[str]]:
    """Three nats-server processes with JetStream in one cluster on free loopback ports."""
    ports = []
    for _ in range(6):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    clients, routes = ports[:3], ports[3:]
    route_urls = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
    processes = []
    try:
        for i in range(3):
            config = root / f"n{i}.conf"
            config.write_text(f'server_name: n{i}\nlisten: 127.0.0.1:{clients[i]}\n'
                              f'jetstream {{ store_dir: "{root / f"store{i}"}" }}\n'
                              f'cluster {{ name: bench, listen: 127.0.0.1:{routes[i]}, routes: [{route_urls}] }}\n')
            processes.append(subprocess.Popen([shutil.which("nats-server") or "nats-server", "-c", str(config)],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls = [f"nats://127.0.0.1:{port}" for port in clients]
        deadline = time.monotonic() + 30
        while not asyncio.run(_cluster_ready(urls)):
            if time.monotonic() > deadline:
                raise SystemExit("the NATS cluster did not come up within 30 s")
            time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


async def _cluster_ready(urls: list[str]) -> bool:
    import nats

    try:
        nc = await nats.connect(urls, connect_timeout=1, allow_reconnect=False)
    except Exception:  # noqa: BLE001 - not up yet
        return False
    try:
        js = nc.jetstream(timeout=2)
        await js.add_stream(name="BENCH_READY", subjects=["bench.ready"], num_replicas=3)
        await js.delete_stream("BENCH_READY")
        return True
    except Exception:  # noqa: BLE001 - no leader yet
        return False
    finally:
        await nc.close()


async def _delete_stream(servers: str | list[str], name: str) -> None:
    import nats

    nc = await nats.connect(servers)
    try:
        await nc.jetstream().delete_stream(f"DASH_WAL_{name}")
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round of 0.5 s per cell")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an administrative DSN; the benchmark creates and drops its own database")
    parser.add_argument("--backends", default="file,jetstream,postgres")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 0.5, 1
    backends = args.backends.split(",")
    database = f"dash_bench_{uuid.uuid4().hex[:10]}"
    pg_dsn = args.pg.rpartition("/")[0] + "/" + database
    if "postgres" in backends:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
    try:
        with tempfile.TemporaryDirectory(prefix="dash-log-bench-") as tmp, contextlib.ExitStack() as stack:
            args.r3 = stack.enter_context(nats_cluster(Path(tmp))) if "jetstream-r3" in backends else []
            results = asyncio.run(measure(backends, args, Path(tmp), pg_dsn))
    finally:
        if "postgres" in backends:
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print_table(results, backends, args)


async def measure(backends: list[str], args: argparse.Namespace, tmp: Path,
                  pg_dsn: str) -> dict[tuple[str, int, int], Cell]:
    makers: dict[str, Callable[[str], Log]] = {
        "file": lambda name: WriteAheadLog(tmp / name),
        "jetstream": lambda name: JetStreamLog(name, servers=args.nats),
        "jetstream-r3": lambda name: JetStreamLog(name, servers=args.r3, replicas=3),
        "postgres": lambda name: PostgresLog(pg_dsn, name),
    }
    rounds: dict[tuple[str, int, int], list[Cell]] = {}
    for r in range(args.rounds):
        for batch in BATCHES:
            for appenders in APPENDERS:
                for backend in backends:
                    name = f"bench-{r}-{batch}-{appenders}-{uuid.uuid4().hex[:6]}"
                    try:
                        cell = await run_cell(makers[backend](name), appenders, batch, args.seconds)
                    finally:
                        if backend.startswith("jetstream"):
                            await _delete_stream(args.r3 if backend == "jetstream-r3" else args.nats, name)
                    rounds.setdefault((backend, appenders, batch), []).append(cell)
    return {k: Cell(statistics.median(c.records_s for c in v), statistics.median(c.p50_ms for c in v),
                    statistics.median(c.p99_ms for c in v)) for k, v in rounds.items()}


def print_table(results: dict[tuple[str, int, int], Cell], backends: list[str], args: argparse.Namespace) -> None:
    print(f"write-ahead log: acknowledged records/s and append latency ({len(RECORD)}-byte records; "
          f"median of {args.rounds} round(s) of {args.seconds:g} s per cell)")
    header = (f"| {'backend':<12} | appenders | batch | {'records/s':>10} | {'x file':>6} | "
              f"{'p50 ms':>7} | {'p99 ms':>7} | {'p99 x file':>10} |")
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    for batch in BATCHES:
        for appenders in APPENDERS:
            base = results.get(("file", appenders, batch))
            for backend in backends:
                cell = results[(backend, appenders, batch)]
                ratio = f"{cell.records_s / base.records_s:.2f}" if base else "-"
                p99_ratio = f"{cell.p99_ms / base.p99_ms:.2f}" if base else "-"
                print(f"| {backend:<12} | {appenders:>9} | {batch:>5} | {cell.records_s:>10,.0f} | {ratio:>6} | "
                      f"{cell.p50_ms:>7.2f} | {cell.p99_ms:>7.2f} | {p99_ratio:>10} |")


if __name__ == "__main__":
    main()
