"""Benchmark: storing mapped rows in PostgreSQL silver and in the lake's silver Parquet, then
sustained ingest end to end with PostgreSQL silver on.

    apt-get install wrk          # the load generator for the end-to-end rows
    .venv/bin/python benchmarks/silver.py [--batches 30] [--duration 10] [--quick] [--no-e2e]

PostgreSQL is the shared server (`$DASH_TEST_PG_DSN`, default postgres@127.0.0.1:5432/test);
the benchmark creates a database of its own there and drops it at the end.

Store rows, all on the same batches of mapped rows (10,000-row batches of 8 columns: seq,
time 1 ms apart, device of 50, its site, 2 doubles (1% null), an int, a bool; rolled up by
device, site and the bool, so a 10 s bucket holds 10,000 rows in 100 groups), each path into
a fresh table or folder, the paths taking turns batch by batch:
- COPY binary, psycopg `write_row` with `set_types`: Arrow to Python rows, binary COPY.
- COPY binary, built from Arrow (`dash_ray.silver.pgbinary`): the binary COPY body built with
  numpy from the Arrow buffers, no per-row Python.
- COPY text, Arrow CSV: Arrow writes CSV, COPY (FORMAT csv).
- PostgresSilver.write without / with rollups: what the pipeline's follower does per range
  (delete the range, COPY, progress row, rollup merge for each granularity; one transaction);
  and with rollups whose partials the lake's write computed just before, as in the pipeline.
- LakeSilver.write without / with rollups: Parquet (zstd) per event day into a local folder,
  plus the rollup partials' files.
End to end (the platform on its defaults, in-replica ingress, as benchmarks/ingest.py): signed
NDJSON x1000 via `wrk -t1` for `--duration` seconds, once on a platform without a database
(lake silver only) and once with DASH_PG_DSN set (PostgreSQL silver on, followed from the
lake). "records/s to stored" counts every record acknowledged, from wrk's start until the
pipeline's stored seq (lake), and for PostgreSQL its silver seq, reached the last acknowledged
seq. Times on a shared 2-core machine are noisy: compare rows of one run (the ratio column).
Because other work on the machine takes cores away, each end-to-end row also reports the CPU
time the platform spent per record (every process of its Ray instance and the PostgreSQL
backends of its database) and what two otherwise idle cores would give at that cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dash_ray.lake import Lake  # noqa: E402
from dash_ray.silver import pgschema  # noqa: E402
from dash_ray.silver.lake import LakeSilver  # noqa: E402
from dash_ray.silver.postgres import PostgresSilver  # noqa: E402
from dash_ray.silver.rollup import plan_for  # noqa: E402
from dash_ray.silver.schema import Column, Schema  # noqa: E402

ADMIN_DSN = os.environ.get("DASH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = 10_000
COLUMNS = [Column("device", "string"), Column("site", "string"), Column("temp", "double"),
           Column("humidity", "double"), Column("count", "int"), Column("ok", "bool")]
PG_TYPES = ["bigint", "timestamptz", "text", "text", "float8", "float8", "bigint", "bool"]
TIMESTAMP = pa.timestamp("us", tz="UTC")


def batches(count: int) -> list[pa.Table]:
    out = []
    start = 1_767_225_600_000_000
    for b in range(count):
        first = b * ROWS + 1
        seq = pa.array(range(first, first + ROWS), pa.int64())
        out.append(pa.table({
            "seq": seq,
            "time": pa.array([start + (first + i) * 1_000 for i in range(ROWS)], pa.int64()).cast(TIMESTAMP),
            "device": pa.array([f"sensor-{(first + i) % 50}" for i in range(ROWS)]),
            "site": pa.array([("lab", "roof", "cellar")[(first + i) % 50 % 3] for i in range(ROWS)]),
            "temp": pa.array([((first + i) % 550) / 10 - 10 for i in range(ROWS)], pa.float64()),
            "humidity": pa.array([None if i % 97 == 0 else (i % 1000) / 10 for i in range(ROWS)], pa.float64()),
            "count": pa.array([(first + i) % 1000 for i in range(ROWS)], pa.int64()),
            "ok": pa.array([(first + i) % 5 != 0 for i in range(ROWS)], pa.bool_()),
        }))
    return out


# -- store rows -------------------------------------------------------------------------------


def fresh_table(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS dash_silver."{name}"')
        for statement in pgschema.create_table(name, COLUMNS):
            conn.execute(statement)


def copy_binary_rows(dsn: str, name: str) -> Callable[[pa.Table], None]:
    conn = psycopg.connect(dsn)
    names = ", ".join(f'"{n}"' for n in ["seq", "time", *(c.name for c in COLUMNS)])

    def write(table: pa.Table) -> None:
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(f'COPY dash_silver."{name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
                copy.set_types(PG_TYPES)
                for row in zip(*(c.to_pylist() for c in table.columns), strict=True):
                    copy.write_row(row)

    write.close = conn.close  # type: ignore[attr-defined]
    return write


def copy_binary_arrow(dsn: str, name: str) -> Callable[[pa.Table], None]:
    from dash_ray.silver import pgbinary

    conn = psycopg.connect(dsn)
    names = ", ".join(f'"{n}"' for n in ["seq", "time", *(c.name for c in COLUMNS)])
    types = {"seq": "int", "time": "timestamp", **{c.name: c.type for c in COLUMNS}}

    def write(table: pa.Table) -> None:
        body = pgbinary.encode(table, [types[n] for n in table.column_names])
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(f'COPY dash_silver."{name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
                copy.write(body)

    write.close = conn.close  # type: ignore[attr-defined]
    return write


def copy_csv(dsn: str, name: str) -> Callable[[pa.Table], None]:
    conn = psycopg.connect(dsn)
    names = ", ".join(f'"{n}"' for n in ["seq", "time", *(c.name for c in COLUMNS)])
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")

    def write(table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, options)
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(f'COPY dash_silver."{name}" ({names}) FROM STDIN (FORMAT csv)') as copy:
                copy.write(sink.getvalue())

    write.close = conn.close  # type: ignore[attr-defined]
    return write


def _another(table: pa.Table) -> pa.Table:
    """The same rows as a new table object (zero-copy)."""
    return pa.Table.from_batches(table.to_batches(), schema=table.schema)


def store_rows(dsn: str, tables: list[pa.Table], tmp: Path) -> list[tuple[str, float, list[float]]]:
    """Each path writes the same batches into its own fresh table or folder. The paths take
    turns batch by batch, so a load change on the shared machine hits them all alike."""
    plan = plan_for(Schema(tuple(COLUMNS)))
    writers: list[tuple[str, Callable[[pa.Table], None], Callable[[], None]]] = []
    for label, make in (("COPY binary, psycopg write_row + set_types", copy_binary_rows),
                        ("COPY binary, built from Arrow (pgbinary)", copy_binary_arrow),
                        ("COPY text, Arrow CSV", copy_csv)):
        name = f"bench-{uuid.uuid4().hex[:8]}"
        fresh_table(dsn, name)
        write = make(dsn, name)
        writers.append((label, write, write.close))  # type: ignore[attr-defined]
    for label, with_plan in (("PostgresSilver.write, no rollups", None), ("PostgresSilver.write + rollups", plan)):
        store = PostgresSilver(dsn, f"bench-{uuid.uuid4().hex[:8]}", COLUMNS, plan=with_plan)
        writers.append((label, lambda t, s=store: s.write(t, first_seq=t["seq"][0].as_py(),
                                                          last_seq=t["seq"][-1].as_py()), store.close))
    for label, with_plan in (("LakeSilver.write (Parquet), no rollups", None),
                             ("LakeSilver.write (Parquet) + rollups", plan)):
        silver = LakeSilver(Lake.from_url(str(tmp / f"lake-{uuid.uuid4().hex[:6]}")), "bench", with_plan)
        writers.append((label, lambda t, s=silver: s.write(t, first_seq=t["seq"][0].as_py(),
                                                           last_seq=t["seq"][-1].as_py()), lambda: None))
    # As in the pipeline: the follower is given the very table the lake's rollups were computed
    # on, and reuses their partials (dash_ray/silver/partials.py).
    store = PostgresSilver(dsn, f"bench-{uuid.uuid4().hex[:8]}", COLUMNS, plan=plan)
    writers.append(("PostgresSilver.write + rollups, partials from the lake's write", lambda t, s=store: s.write(
        t, first_seq=t["seq"][0].as_py(), last_seq=t["seq"][-1].as_py()), store.close))
    shared = {"LakeSilver.write (Parquet) + rollups", "PostgresSilver.write + rollups, partials from the lake's write"}
    latencies: dict[str, list[float]] = {label: [] for label, _, _ in writers}
    for table in tables:
        lake_table = _another(table)
        for label, write, _ in writers:
            # Every path but the pair above gets a table object of its own, so none finds the
            # partials another computed.
            given = lake_table if label in shared else _another(table)
            started = time.perf_counter()
            write(given)
            latencies[label].append(time.perf_counter() - started)
    for _, _, close in writers:
        close()
    return [(label, len(tables) * ROWS / sum(latencies[label]), latencies[label]) for label, _, _ in writers]


# -- end to end -------------------------------------------------------------------------------


def cpu_by_process(root_pid: int, database: str | None) -> dict[int, float]:
    """CPU seconds (user + system) so far of every process under `root_pid` (the local Ray
    instance: GCS, raylet, workers, Serve replicas, the actors) and of each PostgreSQL backend
    serving `database`; PostgreSQL's shared background processes are not counted."""
    pids: set[int] = set()
    if database is not None:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            pids = {r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))}
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    wanted = {root_pid} | pids
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in wanted} - wanted
        wanted |= more
        grew = bool(more)
    return {pid: cpu[pid] for pid in wanted if pid in cpu}


def end_to_end(duration: int, connections: int, dsn: str | None) -> dict[str, Any]:
    """One platform (with `dsn`: PostgreSQL silver on), wrk NDJSON x1000, then wait until the
    lake (and PostgreSQL) hold every acknowledged record."""
    import ray

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import load

    from benchmarks.ingest import PATH, SPEC, record
    from dash_ray.auth.tokens import hash_token
    from dash_ray.client import Client
    from dash_ray.deploy.localray import free_port
    from dash_ray.settings import Settings
    from serve_app.startup import down, up

    home = Path(tempfile.mkdtemp(prefix="dash-bench-silver-"))
    token = "dash_admin_bench"
    settings = Settings.from_env(env={}, home=str(home / "home"), port=free_port(),
                                 admin_token_hash=hash_token(token), pg_dsn=dsn)
    platform = up(settings)
    try:
        client = Client(platform.url, token=token)
        secret = client.deploy(SPEC).ingest_secret
        actor = ray.get_actor("pipeline:bench", namespace=settings.namespace)
        # Every request signed on its own (a signed request sent again is a duplicate, not stored).
        pool = load.ndjson_pool(secret, PATH, f"127.0.0.1:{settings.port}", record, 1000, 20)
        done: dict[str, Any] = {}

        def run_load() -> None:
            done["wrk"] = load.run(f"{platform.url}{PATH}", pool, connections, duration)
            done["at"] = time.perf_counter() - started

        assert platform.local is not None, "the benchmark starts a local Ray of its own"
        root = platform.local.pid
        database = dsn.rsplit("/", 1)[1] if dsn is not None else None
        cpu_before = cpu_by_process(root, database)
        started = time.perf_counter()
        loader = threading.Thread(target=run_load)
        loader.start()
        lake_at = pg_at = None
        last_seq = None
        samples = []
        while True:
            counters = ray.get(actor.health.remote())["counters"]
            now = time.perf_counter() - started
            samples.append((now, counters["last_seq"], counters["stored_seq"], counters.get("silver_seq")))
            if last_seq is None and "at" in done:
                loader.join()
                last_seq = ray.get(actor.health.remote())["counters"]["last_seq"]
            if last_seq is not None:
                if lake_at is None and counters["stored_seq"] >= last_seq:
                    lake_at = now
                if dsn is not None and pg_at is None and (counters.get("silver_seq") or 0) >= last_seq:
                    pg_at = now
                if lake_at is not None and (dsn is None or pg_at is not None):
                    break
                if now > done["at"] + 300:
                    raise RuntimeError(f"not caught up 300 s after wrk: {counters}")
            time.sleep(0.1)
        result, wrk_done = done["wrk"], done["at"]
        cpu_after = cpu_by_process(root, database)
        cpu = sum(t - cpu_before.get(pid, 0.0) for pid, t in cpu_after.items())
        timeline = []
        for second in range(1, int(samples[-1][0]) + 2, 2):
            at = next((smp for smp in samples if smp[0] >= second), samples[-1])
            timeline.append(f"{second}s {at[1] // 1000}/{at[2] // 1000}/{(at[3] or 0) // 1000}")
        print("  seq in thousands, acked/lake/PostgreSQL: " + ", ".join(timeline), flush=True)
        counters = ray.get(actor.health.remote())["counters"]
        client.close()
        pool.close()
    finally:
        down(settings)
        shutil.rmtree(home, ignore_errors=True)
    return {"wrk": result, "wrk_s": wrk_done, "last_seq": last_seq, "lake_s": lake_at, "pg_s": pg_at,
            "counters": counters, "cpu_s": cpu}


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="10 batches, 5 s end to end")
    parser.add_argument("--no-e2e", action="store_true", help="store rows only")
    parser.add_argument("--only-e2e", action="store_true", help="end to end only")
    args = parser.parse_args()
    count, duration = (10, 5) if args.quick else (args.batches, args.duration)

    database = f"dash_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"
    tmp = Path(tempfile.mkdtemp(prefix="dash-bench-silver-"))
    try:
        rows = []
        if not args.only_e2e:
            print(f"store rows: {count} batches of {ROWS:,} rows x 8 columns", flush=True)
            rows = store_rows(dsn, batches(count), tmp)
        e2e = []
        if not args.no_e2e:
            if shutil.which("wrk") is None:
                print("wrk is needed for the end-to-end rows: apt-get install wrk", file=sys.stderr)
                return 2
            for label, with_dsn in (("lake silver only (no database)", None),
                                    ("PostgreSQL silver on (DASH_PG_DSN)", dsn)):
                print(f"end to end: {label}", flush=True)
                e2e.append((label, end_to_end(duration, args.connections, with_dsn)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    if rows:
        base = next(r for label, r, _ in rows if label.startswith("COPY text"))
        print(f"\nStoring mapped rows: {count} batches of {ROWS:,} rows x 8 columns, one after another, "
              f"{os.cpu_count()} cores\n")
        print("| path | rows/s | p50 ms/batch | p99 ms/batch | vs COPY text (Arrow CSV) |")
        print("|---|---|---|---|---|")
        for label, rate, latencies in rows:
            ms = sorted(x * 1000 for x in latencies)
            print(f"| {label} | {rate:,.0f} | {statistics.median(ms):.1f} | {ms[int(len(ms) * 0.99)]:.1f} "
                  f"| {rate / base:.2f} |")
    if e2e:
        print(f"\nEnd to end: signed NDJSON x1000, wrk -t1 -c{args.connections} for {duration} s, platform defaults\n")
        print("| silver | acked records | wrk records/s | p50 ms | p99 ms | non-2xx | lake caught up s "
              "| PostgreSQL caught up s | records/s to stored | vs lake only | CPU µs/record "
              "| records/s on 2 idle cores (projected) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        lake_rate = None
        for label, r in e2e:
            done = r["pg_s"] if r["pg_s"] is not None else r["lake_s"]
            rate = r["last_seq"] / done
            lake_rate = lake_rate or rate
            pg = f"{r['pg_s']:.1f}" if r["pg_s"] is not None else "-"
            w = r["wrk"]
            per_record = r["cpu_s"] / r["last_seq"] * 1e6
            print(f"| {label} | {r['last_seq']:,} | {w['rps'] * 1000:,.0f} | {w['p50']:.1f} | {w['p99']:.1f} "
                  f"| {w['non2xx']} | {r['lake_s']:.1f} | {pg} | {rate:,.0f} | {rate / lake_rate:.2f} "
                  f"| {per_record:.1f} "
                  f"| {2e6 / per_record:,.0f} |")
        print("\nCPU µs/record: CPU time of the Ray instance's processes (all under its `ray start`) "
              "and the database's PostgreSQL backends "
              "from wrk's start until caught up, per acknowledged record (wrk and the driver not counted); the "
              "projection divides two cores by it.")
        print("\n(times from wrk's start; wrk ran for", duration, "s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
