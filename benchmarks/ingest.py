"""Benchmark: signed ingest through the whole platform, beside a plain uvicorn+Starlette no-op
endpoint measured in the same run (the ceiling of any Python HTTP path on this machine).

    apt-get install wrk          # the load generator: a separate C process on loopback
    .venv/bin/python benchmarks/ingest.py [--duration 10] [--quick]

Rows:
- ceiling: uvicorn (httptools) + Starlette in its own process, POST answered 202, no work.
- dash single event: one signed JSON object per request; the platform checks the signature,
  decodes, coalesces concurrent requests into one actor call, logs them with group commit
  (fdatasync) and answers 202 only once durable.
- dash NDJSON x1000: one signed request carries 1,000 records.
- dash via Serve proxy: the same platform and app with `DASH_INGRESS=serve`, i.e. Serve's
  own HTTP proxy in front of the replica (the path a plain Serve deployment takes).
Every 202 is counted against the pipeline's own `last_seq` afterwards, so the figures are
durable records, not just answered requests. The load generator is `wrk -t1` on loopback;
p50/p99 are wrk's latency percentiles. Times on a shared 2-core machine are noisy: compare
rows of one run, and see the ratio column.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = {
    "id": "bench",
    "mapping": {"fields": {
        "time": {"path": "$.ts", "type": "timestamp", "unit": "ms"},
        "device": {"path": "$.device", "type": "string", "required": True},
        "temp_c": {"path": "$.temp", "type": "double"},
        "temp_f": {"expr": "temp_c * 9 / 5 + 32", "type": "double"},
    }, "validate": [{"field": "temp_c", "min": -90, "max": 90}]},
    "flush": {"records": 20000, "seconds": 1.0},
    "limits": {"queue_records": 2_000_000, "max_body_bytes": 16 * 1024 * 1024},
}


def record(i: int) -> dict:
    return {"ts": 1_767_225_600_000 + i, "device": f"sensor-{i % 50}", "temp": 20 + (i % 17) / 3}


def ceiling_server(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def accept(request):  # noqa: ANN001
        await request.body()
        return Response(b'{"accepted":1,"last_seq":1}', status_code=202, media_type="application/json")

    app = Starlette(routes=[Route("/v1/pipelines/{pid}/events", accept, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", log_level="warning", access_log=False)


def wrk(url: str, body: bytes, headers: dict[str, str], connections: int, duration: int) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    with script:
        script.write('wrk.method = "POST"\n')
        script.write(f"wrk.body = [==[{body.decode()}]==]\n")
        for name, value in headers.items():
            script.write(f'wrk.headers["{name}"] = "{value}"\n')
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name, url],
            capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "requests": total, "non2xx": int(bad.group(1)) if bad else 0,
            "errors": errors.group(1) if errors else "", "p50": pct("50"), "p99": pct("99")}


def measure_platform(ingress: str, duration: int, single: bytes, ndjson: bytes, rows: list,
                     single_conns: tuple[int, ...], ndjson_conns: tuple[int, ...]) -> tuple[int, dict]:
    """Start the platform with `ingress`, drive it, stop it; append rows; return the records
    wrk saw accepted and the pipeline's own counters."""
    import ray

    from dash_ray.client import Client
    from dash_ray.deploy.localray import free_port
    from dash_ray.settings import Settings
    from dash_ray.ingest.signing import signature_header
    from dash_ray.auth.tokens import hash_token
    from serve_app.platform import down, up

    label = "dash" if ingress == "replica" else "dash via Serve proxy"
    home = Path(tempfile.mkdtemp(prefix="dash-bench-"))
    token = "dash_admin_bench"
    settings = Settings.from_env(env={}, home=str(home / "home"), port=free_port(),
                                 admin_token_hash=hash_token(token), ingress=ingress,
                                 coalesce_inflight=int(os.environ.get("BENCH_INFLIGHT", "2")))
    platform = up(settings)
    accepted = 0
    try:
        client = Client(platform.url, token=token)
        secret = client.deploy(SPEC).ingest_secret
        url = f"{platform.url}/v1/pipelines/bench/events"
        for c in single_conns:
            headers = {"Content-Type": "application/json", "Dash-Signature": signature_header(secret, single)}
            result = wrk(url, single, headers, c, duration)
            accepted += result["requests"] - result["non2xx"]
            rows.append((f"{label}: signed single event", c, result, 1))
        for c in ndjson_conns:
            headers = {"Content-Type": "application/x-ndjson", "Dash-Signature": signature_header(secret, ndjson)}
            result = wrk(url, ndjson, headers, c, duration)
            accepted += (result["requests"] - result["non2xx"]) * 1000
            rows.append((f"{label}: signed NDJSON x1000", c, result, 1000))
        actor = ray.get_actor("pipeline:bench", namespace=settings.namespace)
        counters = ray.get(actor.health.remote())["counters"]
        client.close()
    finally:
        down(settings)
        shutil.rmtree(home, ignore_errors=True)
    return accepted, counters


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 s per row")
    parser.add_argument("--ceiling-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_server:
        ceiling_server(args.ceiling_server)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    duration = 3 if args.quick else args.duration

    from dash_ray.deploy.localray import free_port

    single = orjson.dumps(record(1))
    ndjson = b"".join(orjson.dumps(record(i)) + b"\n" for i in range(1000))
    rows: list[tuple[str, int, dict, int]] = []

    port = free_port()
    ceiling = subprocess.Popen([sys.executable, __file__, "--ceiling-server", str(port)])
    try:
        time.sleep(2.0)
        url = f"http://127.0.0.1:{port}/v1/pipelines/bench/events"
        for c in (32, 128):
            rows.append(("ceiling: uvicorn+starlette no-op", c,
                         wrk(url, single, {"Content-Type": "application/json"}, c, duration), 1))
    finally:
        ceiling.terminate()
        ceiling.wait()

    accepted, counters = measure_platform("replica", duration, single, ndjson, rows, (32, 128), (8, 32))
    serve_rows: list = []
    measure_platform("serve", duration, single, ndjson, serve_rows, (32,), (8,))
    rows += serve_rows

    ceiling_rps = {c: r["rps"] for name, c, r, _ in rows if name.startswith("ceiling")}
    print(f"\nSigned ingest, wrk -t1, {duration} s per row, loopback, {os.cpu_count()} cores\n")
    print("| path | conns | req/s | records/s | p50 ms | p99 ms | non-2xx | vs ceiling req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, c, r, per in rows:
        base = ceiling_rps.get(c) or ceiling_rps[32]
        print(f"| {name} | {c} | {r['rps']:,.0f} | {r['rps'] * per:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} "
              f"| {r['non2xx']} | {r['rps'] / base:.2f} |")
    print(f"\ndurable check: wrk counted {accepted:,} accepted records; the pipeline's last_seq is "
          f"{counters.get('last_seq'):,} (wrk may count a few requests cut off at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
