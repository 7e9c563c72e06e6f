"""Benchmark: signed ingest through the whole platform on the defaults a user gets
(`dash-ray up`, a spec with no flush or limit settings), beside two peers measured in the same
run: a no-op uvicorn+Starlette endpoint (the ceiling of any Python HTTP path here) and the glue
a team writes today (Starlette under two uvicorn workers, the same HMAC check, one INSERT and
COMMIT per request into PostgreSQL).

    apt-get install wrk          # the load generator: a separate C process on loopback
    .venv/bin/python benchmarks/ingest.py [--duration 10] [--repeat 3] [--quick]
        [--starlette-ingest] [--profile benchmarks/profiles]

Rows (`benchmarks/peers.py` has the servers, `benchmarks/load.py` the load):
- signed single events: one JSON object per request; NDJSON x1000: 1,000 records per request.
  Every request is signed on its own (the platform deduplicates a replayed signed request).
- dash: the platform checks the signature, decodes, coalesces concurrent requests into one
  actor call, logs them with group commit (fdatasync) and answers 202 only once durable.
- `--starlette-ingest`: the platform's web app in a plain uvicorn process joined to the same
  Ray, raw ingest front vs the ingest routes as Starlette Routes calling `IngestFront.handle`.
All servers stay up together and the rows alternate, `--repeat` rounds; figures are medians,
and every ratio is against rows of the same run. wrk -t1 on loopback; p50/p99 are wrk's.
Every 2xx is counted against the pipeline's own `last_seq` afterwards.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import load  # noqa: E402
import peers  # noqa: E402

SPEC = {
    "id": "bench",
    "mapping": {"fields": {
        "time": {"path": "$.ts", "type": "timestamp", "unit": "ms"},
        "device": {"path": "$.device", "type": "string", "required": True},
        "temp_c": {"path": "$.temp", "type": "double"},
        "temp_f": {"expr": "temp_c * 9 / 5 + 32", "type": "double"},
    }, "validate": [{"field": "temp_c", "min": -90, "max": 90}]},
}
PATH = "/v1/pipelines/bench/events"
PG_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://127.0.0.1:5432/test")


def record(i: int) -> dict:
    return {"ts": 1_767_225_600_000 + i, "device": f"sensor-{i % 50}", "temp": 20 + (i % 17) / 3}


def _wait_port(port: int, timeout: float = 60.0) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def _spawn(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, env={**os.environ, **(env or {})}, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    import signal
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Target:
    """One server the rows are run against: its URL and how its requests are signed."""

    def __init__(self, name: str, port: int, secret: str, fresh: bool) -> None:
        self.name, self.url, self.secret = name, f"http://127.0.0.1:{port}{PATH}", secret
        self.host = f"127.0.0.1:{port}"
        # True: it deduplicates, so every row needs requests never sent. Signed pools are
        # also made anew for every row because signatures age out of the 300 s window.
        self.fresh = fresh
        self._cache: dict[str, load.RequestPool] = {}

    def pool(self, kind: str, duration: int, first: int) -> load.RequestPool:
        if not self.fresh and kind in self._cache:
            return self._cache[kind]
        if kind == "single":
            made = load.single_pool(self.secret, PATH, self.host, record, 15_000 * duration, first)
        else:
            made = load.ndjson_pool(self.secret, PATH, self.host, record, 1000, 20, first)
        if not self.fresh:
            self._cache[kind] = made
        return made

    def done(self, pool: load.RequestPool) -> None:
        if self.fresh:
            pool.close()

    def close(self) -> None:
        for pool in self._cache.values():
            pool.close()


def find_pids(port: int, home: Path) -> tuple[int | None, int | None]:
    """The pid listening on `port` (the web replica) and the pid holding the pipeline's log
    open under `home` (the pipeline actor), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{parts[9]}]")
    replica = actor = None
    wal = str(home / "home" / "wal")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target in inodes:
                    replica = int(pid)
                elif target.startswith(wal):
                    actor = int(pid)
        except OSError:
            continue
    return replica, actor


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of alternating rows; medians")
    parser.add_argument("--quick", action="store_true", help="3 s per row")
    parser.add_argument("--starlette-ingest", action="store_true")
    parser.add_argument("--no-glue", action="store_true")
    parser.add_argument("--only-single", action="store_true")
    parser.add_argument("--profile", help="py-spy the replica and the actor during one single-event row")
    parser.add_argument("--ceiling-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--side-server", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_server:
        peers.ceiling_server(args.ceiling_server)
        return 0
    if args.side_server:
        port, mode, address, path = args.side_server
        peers.side_server(int(port), mode, address, path)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    duration = 3 if args.quick else args.duration
    load_avg = os.getloadavg()

    import psycopg
    import ray

    from dash_ray.client import Client
    try:
        from dash_ray.auth.tokens import hash_token
        from dash_ray.deploy.localray import free_port
    except ImportError:  # the tree before issue 14's layout, to compare with it
        from dash_ray.localray import free_port
        from dash_ray.tokens import hash_token
    from dash_ray.settings import Settings
    from serve_app.startup import down, up

    procs: list[subprocess.Popen] = []
    targets: list[Target] = []
    home = Path(tempfile.mkdtemp(prefix="dash-bench-"))
    table = f"bench_glue_{os.getpid()}"
    settings = None
    results: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    counters: dict = {}
    try:
        port = free_port()
        procs.append(_spawn([sys.executable, __file__, "--ceiling-server", str(port)]))
        targets.append(Target("ceiling: uvicorn+starlette no-op", port, "unused", False))
        if not args.no_glue:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"CREATE TABLE {table} (time timestamptz, device text, temp_c double precision)")
            gport = free_port()
            procs.append(_spawn(
                [sys.executable, "-m", "uvicorn", "peers:glue_app", "--app-dir", str(ROOT / "benchmarks"),
                 "--workers", "2", "--http", "httptools", "--no-access-log", "--log-level", "warning",
                 "--host", "127.0.0.1", "--port", str(gport)],
                env={"BENCH_GLUE_DSN": PG_DSN, "BENCH_GLUE_TABLE": table, "BENCH_GLUE_SECRET": "glue-secret"}))
            targets.append(Target("glue: starlette+psycopg, 2 workers", gport, "glue-secret", True))

        token = "dash_admin_bench"
        settings = Settings.from_env(env={}, home=str(home / "home"), port=free_port(),
                                     admin_token_hash=hash_token(token))
        platform = up(settings)
        client = Client(platform.url, token=token)
        secret = client.deploy(SPEC).ingest_secret
        targets.append(Target("dash", settings.port, secret, True))
        if args.starlette_ingest:
            spath = home / "web.pickle"
            spath.write_bytes(pickle.dumps(settings.web()))
            modes = os.environ.get("BENCH_SIDE_MODES", "raw,starlette").split(",")
            for mode in modes:
                sport = free_port()
                procs.append(_spawn([sys.executable, __file__, "--side-server", str(sport), mode,
                                     platform.ray_address, str(spath)]))
                targets.append(Target(f"dash web app in uvicorn, {mode} ingest front" if mode != "starlette" else
                                      "dash web app in uvicorn, Starlette Route ingest", sport, secret, True))
        for target in targets:
            _wait_port(int(target.host.rsplit(":", 1)[1]))
        time.sleep(1.0)

        kinds = [("single", 32)] + ([] if args.only_single else [("ndjson", 8), ("ndjson", 32)])
        first = 0
        for rnd in range(args.repeat):
            for kind, conns in kinds:
                for target in targets:
                    if kind == "ndjson" and target.name.startswith("dash web app"):
                        continue
                    pool = target.pool(kind, duration, first)
                    first += pool.size * pool.records_per_request
                    prof = None
                    if args.profile and rnd == 0 and kind == "single" and target.name == "dash":
                        prof = _start_profiles(args.profile, settings.port, home, duration)
                    pids = find_pids(settings.port, home) if target.name == "dash" else (None, None)
                    before = [_cpu(pid) for pid in pids]
                    row = load.run(target.url, pool, conns, duration)
                    row["cpu"] = [(_cpu(pid) - b) if pid else None for pid, b in zip(pids, before, strict=True)]
                    results[(target.name, kind, conns)].append(row)
                    target.done(pool)
                    for p in prof or ():
                        p.wait()
        actor = ray.get_actor("pipeline:bench", namespace=settings.namespace)
        counters = ray.get(actor.health.remote())["counters"]
        client.close()
    finally:
        for target in targets:
            target.close()
        for proc in procs:
            _stop(proc)
        if settings is not None:
            down(settings)
        shutil.rmtree(home, ignore_errors=True)
        if not args.no_glue:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
    _report(results, counters, duration, args.repeat, load_avg)
    return 0


def _cpu(pid: int | None) -> float:
    """CPU seconds (user + system) the process has used so far."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_profiles(out: str, port: int, home: Path, duration: int) -> list[subprocess.Popen]:
    replica, actor = find_pids(port, home)
    Path(out).mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    procs = []
    native = ["--native"] if os.environ.get("BENCH_PYSPY_NATIVE") else []
    for name, pid in (("replica", replica), ("actor", actor)):
        if pid is None:
            print(f"no {name} pid found", file=sys.stderr)
            continue
        print(f"py-spy: {name} pid {pid}", file=sys.stderr)
        for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
            procs.append(subprocess.Popen(
                [spy, "record", "--nonblocking", "-r", "100", *native, "-f", fmt, "-o", f"{out}/single-{name}.{ext}",
                 "--pid", str(pid), "-d", str(max(1, duration - 2))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.5)
    return procs


def _round_ratios(results: dict, kind: str, conns: int) -> list[float]:
    raw = results[("dash web app in uvicorn, raw ingest front", kind, conns)]
    star = results[("dash web app in uvicorn, Starlette Route ingest", kind, conns)]
    return [a["rps"] / b["rps"] for a, b in zip(raw, star, strict=True)]


def _report(results: dict, counters: dict, duration: int, repeat: int, load_avg: tuple) -> None:
    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    from dash_ray.spec import FlushSpec, LimitsSpec
    try:
        from dash_ray.settings import WebSettings
        inflight = WebSettings().coalesce_inflight
    except ImportError:  # the tree before issue 14's settings split
        inflight = 2
    flush, limits = FlushSpec(), LimitsSpec()
    print(f"\nSigned ingest on the defaults (flush {flush.records:,} records / {flush.seconds:g} s, queue "
          f"{limits.queue_records:,} records, coalesce_inflight {inflight}), wrk -t1, {duration} s per row, "
          f"median of {repeat}, loopback, "
          f"{os.cpu_count()} cores, load average before the run {load_avg[0]:.1f}\n")
    print("| path | kind | conns | req/s | records/s | p50 ms | p99 ms | non-2xx (by status) |")
    print("|---|---|---|---|---|---|---|---|")
    by_kind: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for (name, kind, conns), rows in results.items():
        rps = med(rows, "rps")
        per = rows[0]["per"]
        by_kind[(kind, conns)][name] = rps * per
        bad: dict[str, int] = defaultdict(int)
        for r in rows:
            for status, n in r["statuses"].items():
                if not status.startswith("2"):
                    bad[status] += n
        bad_text = ", ".join(f"{s}: {n}" for s, n in sorted(bad.items())) or "0"
        wrapped = sum(r["wrapped"] for r in rows)
        label = "single event" if kind == "single" else "NDJSON x1000"
        print(f"| {name} | {label} | {conns} | {rps:,.0f} | {rps * per:,.0f} | {med(rows, 'p50'):.1f} | "
              f"{med(rows, 'p99'):.1f} | {bad_text}"
              f"{' (pool wrapped)' if wrapped and name.startswith('dash') else ''} |")
    for (name, kind, conns), rows in results.items():
        if name == "dash":
            cpu = [r["cpu"] for r in rows]
            rep = statistics.median(1000 * c[0] / r["requests"]
                                    for c, r in zip(cpu, rows, strict=True) if c[0] is not None)
            act = statistics.median(1000 * c[1] / r["requests"]
                                    for c, r in zip(cpu, rows, strict=True) if c[1] is not None)
            print(f"  dash {kind} x{conns} conns: CPU seconds per 1,000 requests: web replica {rep:.3f}, "
                  f"pipeline actor {act:.3f}")
    print("\nRatios (records/s, same run):")
    for (kind, conns), figures in by_kind.items():
        dash = figures.get("dash")
        for other in figures:
            if dash and other != "dash" and not other.startswith("dash web app"):
                print(f"  {kind} x{conns} conns: dash / {other.split(':')[0]} = {dash / figures[other]:.2f}")
        raw = figures.get("dash web app in uvicorn, raw ingest front")
        star = figures.get("dash web app in uvicorn, Starlette Route ingest")
        if raw and star:
            print(f"  {kind} x{conns} conns: raw front / Starlette Route = {raw / star:.2f} (medians); "
                  f"per round: {', '.join(f'{r:.2f}' for r in _round_ratios(results, kind, conns))}")
    accepted = sum(r["ok"] * r["per"] for (name, _, _), rows in results.items() if name.startswith("dash")
                   for r in rows)
    if counters:
        print(f"\ndurable check: wrk saw {accepted:,} records answered 2xx by the platform; its last_seq is "
              f"{counters.get('last_seq'):,}, duplicates {counters.get('duplicates')}")


if __name__ == "__main__":
    sys.exit(main())
