"""Benchmark: many idle pipelines on one node, `placement: shared` (many pipelines per host
actor) against `dedicated` (one Ray actor each), in the same run.

    .venv/bin/python benchmarks/pipelines.py [--shared 100,1000,2000] [--dedicated 100]
        [--concurrency 8]

Each row starts a fresh local platform (`serve_app.startup.up`, as `dash-ray up`), deploys N
push pipelines through the HTTP API (`--concurrency` clients at once) and sends each one
signed event right after its deploy returned; then, with every pipeline idle, it measures
memory. Columns:
- deploy/s: pipelines deployed per second of wall time (the registry starts each one before
  its PUT answers); deploy p50/p99: one PUT's latency.
- to 202 p50/p99/max: from the PUT's answer to the first signed event's 202 (its first
  ingest: the web replica looks the pipeline up and connects to its channel).
- RSS/pipeline: the growth of the summed RSS of the Ray instance's processes (workers,
  raylet, GCS ...) over the empty platform, divided by N; MemAvailable/pipeline: the drop of
  the machine's MemAvailable over the same span (noisy: other processes share the machine).
- workers: the pipeline-running Ray worker processes (host or pipeline actors) and their RSS.
Ratios are against the dedicated row of the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dash_ray.auth.tokens import hash_token  # noqa: E402
from dash_ray.client import Client  # noqa: E402
from dash_ray.deploy.localray import instance_pids, stop_instance  # noqa: E402
from dash_ray.settings import Settings  # noqa: E402
from serve_app.startup import down, up  # noqa: E402

TOKEN = "bench-admin-token"
WORKERS = (b"ray::HostActor", b"ray::PipelineActor")


def spec(n: int, placement: str) -> dict[str, Any]:
    return {"id": f"p{n:05d}", "source": {"kind": "push"}, "placement": placement,
            "mapping": {"fields": {"time": {"path": "$.ts", "type": "timestamp"},
                                   "temp_c": {"path": "$.temp", "type": "double"}}}}


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _mem_available_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def memory(local: Any) -> tuple[int, int, int]:
    """(summed RSS of the instance's processes, of its pipeline workers, their count), in kB."""
    pids = instance_pids(local)
    workers = [p for p in pids if _cmdline(p).startswith(WORKERS)]
    return sum(_rss_kb(p) for p in pids), sum(_rss_kb(p) for p in workers), len(workers)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(count: int, placement: str, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-pipelines-") as home:
        settings = Settings.from_env(env={}, home=home, port=0, admin_token_hash=hash_token(TOKEN),
                                     health_interval_s=2.0)
        started = up(settings)
        settings = settings.with_(port=int(started.url.rsplit(":", 1)[1]))
        try:
            time.sleep(3)
            base_rss, _, _ = memory(started.local)
            base_avail = _mem_available_kb()
            deploy_s: list[float] = []
            to_202: list[float] = []
            failures: list[str] = []
            local = threading.local()

            def one(n: int) -> None:
                client = getattr(local, "client", None)
                if client is None:
                    client = local.client = Client(started.url, token=TOKEN, timeout=120)
                t0 = time.perf_counter()
                try:
                    created = client.deploy(spec(n, placement))
                    t1 = time.perf_counter()
                    client.ingest(created.id, {"ts": "2026-05-01T12:00:00Z", "temp": 20.5},
                                  secret=created.ingest_secret)
                except Exception as exc:  # noqa: BLE001 - counted and shown
                    failures.append(f"p{n:05d}: {type(exc).__name__}: {exc}"[:200])
                    return
                t2 = time.perf_counter()
                deploy_s.append(t1 - t0)
                to_202.append(t2 - t1)

            wall = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(count)))
            wall = time.perf_counter() - wall
            time.sleep(5)  # idle: the health rounds go on
            rss, worker_rss, workers = memory(started.local)
            avail = _mem_available_kb()
        finally:
            down(settings)
            if started.local is not None:
                stop_instance(started.local)
    ok = len(deploy_s)
    return {"placement": placement, "n": count, "ok": ok, "failures": failures,
            "deploy_rate": ok / wall, "deploy_p50": _pct(deploy_s, 0.5), "deploy_p99": _pct(deploy_s, 0.99),
            "to202_p50": _pct(to_202, 0.5), "to202_p99": _pct(to_202, 0.99), "to202_max": max(to_202, default=0),
            "within_1s": sum(1 for t in to_202 if t <= 1.0),
            "rss_mb": (rss - base_rss) / 1024 / max(ok, 1), "avail_mb": (base_avail - avail) / 1024 / max(ok, 1),
            "workers": workers, "worker_rss_mb": worker_rss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default="100,1000,2000", help="pipeline counts for shared rows")
    parser.add_argument("--dedicated", type=int, default=100, help="pipelines in the dedicated baseline row")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    rows = []
    if args.dedicated:
        rows.append(run(args.dedicated, "dedicated", args.concurrency))
        print(f"done: {rows[-1]}", file=sys.stderr, flush=True)
    for count in (int(c) for c in args.shared.split(",") if c.strip()):
        rows.append(run(count, "shared", args.concurrency))
        print(f"done: {rows[-1]}", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["placement"] == "dedicated"), None)
    print(f"\nidle pipelines on one node ({args.concurrency} deploying clients); memory over the empty platform")
    head = (f"{'placement':<10} {'N':>5} {'ok':>5} {'deploy/s':>8} {'deploy p50/p99 ms':>18} "
            f"{'to 202 p50/p99/max ms':>22} {'<=1s':>5} {'RSS/pipe MB':>11} {'MemAvail/pipe MB':>16} "
            f"{'workers (RSS MB)':>17} {'RSS vs dedicated':>16}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = f"{base['rss_mb'] / r['rss_mb']:.1f}x less" if base and r is not base and r["rss_mb"] > 0 else "1.0x"
        print(f"{r['placement']:<10} {r['n']:>5} {r['ok']:>5} {r['deploy_rate']:>8.1f} "
              f"{r['deploy_p50'] * 1000:>8.0f}/{r['deploy_p99'] * 1000:<9.0f} "
              f"{r['to202_p50'] * 1000:>7.0f}/{r['to202_p99'] * 1000:.0f}/{r['to202_max'] * 1000:<7.0f} "
              f"{r['within_1s']:>5} {r['rss_mb']:>11.1f} {r['avail_mb']:>16.1f} "
              f"{r['workers']:>5} ({r['worker_rss_mb']:>7.0f}) {ratio:>16}")
    for r in rows:
        for failure in r["failures"][:5]:
            print(f"  {r['placement']} {r['n']}: {failure}")
    print(f"\none run per row; percentiles by rank; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
