"""Benchmark: aggregate queries over 10 million silver rows (50 devices), from DuckDB over the
lake and from PostgreSQL, each raw and from rollups, in one run.

    .venv/bin/python benchmarks/query.py [--rows 10000000] [--runs 7] [--dsn postgresql://...]

Rows are written through the stores the platform uses (`LakeSilver` with its rollup partials,
`PostgresSilver` with its rollup tables), in ranges of 100,000 as commits would write them;
then compaction's job is done by hand for the lake (one file per day), as the background
compaction does. Queries:
- "1m by device, all": `bucket=1m&agg=avg:temp_c,max:temp_c,count&by=device` over every row;
- "10s, 1 h window": `bucket=10s&agg=avg:temp_c,count` over one hour in the middle.
Each is run `--runs` times; the table prints the median and the best, and each path's ratio
to the raw DuckDB path of the same query. Goals (issue 15): under 1 s for the first from both
stores, under 50 ms (p50) for the second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dash_ray.lake import Lake  # noqa: E402
from dash_ray.query.duckdb import DuckDBEngine  # noqa: E402
from dash_ray.query.model import parse_query  # noqa: E402
from dash_ray.query.postgres import PostgresEngine  # noqa: E402
from dash_ray.silver.lake import LakeSilver, rollup_area  # noqa: E402
from dash_ray.silver.postgres import PostgresSilver  # noqa: E402
from dash_ray.silver.rollup import plan_for  # noqa: E402
from dash_ray.silver.schema import Column, Schema  # noqa: E402

SCHEMA = Schema((Column("device", "string"), Column("temp_c", "double"), Column("humidity", "double")))
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DEVICES = 50


def batch(first: int, count: int, step_us: int) -> pa.Table:
    seq = np.arange(first, first + count, dtype=np.int64)
    rng = np.random.default_rng(first)
    time_us = START_US + (seq - 1) * step_us
    return pa.table({
        "seq": seq,
        "time": pa.array(time_us).cast(pa.timestamp("us", tz="UTC")),
        "device": pa.array([f"sensor-{i % DEVICES}" for i in seq.tolist()]),
        "temp_c": rng.normal(20, 5, count),
        "humidity": rng.uniform(30, 60, count),
    })


def compact(lake: Lake, area: str, pipeline: str) -> None:
    """Merge each day's files into one (what background compaction converges to)."""
    by_day: dict = {}
    for f in lake.files(area, pipeline):
        by_day.setdefault(f.day, []).append(f)
    for day, files in by_day.items():
        if len(files) < 2:
            continue
        table = pa.concat_tables([lake._read_one(f.path, None) for f in files], promote_options="permissive")
        lake.write(area, pipeline, table, first_seq=files[0].first_seq, last_seq=files[-1].last_seq, day=day)
        for f in files:
            lake.fs.rm_file(f.path)


def timed(run, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dsn", default=os.environ.get("DASH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    pipeline = f"bench-{uuid.uuid4().hex[:6]}"
    # The rows span one day (10M rows: 50 devices, each about twice a second), so the first
    # query answers 1,440 buckets for each of the 50 devices.
    step_us = max(1, 86_400_000_000 // args.rows)
    plan = plan_for(SCHEMA, by=["device"])
    home = Path(tempfile.mkdtemp(prefix="dash-qbench-"))
    lake = Lake.from_url(str(home / "lake"))
    lake_silver = LakeSilver(lake, pipeline, plan)
    pg_silver = PostgresSilver(args.dsn, pipeline, list(SCHEMA.columns), plan=plan)
    chunk = 100_000
    print(f"writing {args.rows:,} rows in ranges of {chunk:,} to the lake and PostgreSQL ...", flush=True)
    started = time.perf_counter()
    lake_s = pg_s = 0.0
    for first in range(1, args.rows + 1, chunk):
        table = batch(first, min(chunk, args.rows - first + 1), step_us)
        t0 = time.perf_counter()
        lake_silver.write(table, first_seq=first, last_seq=first + table.num_rows - 1)
        t1 = time.perf_counter()
        pg_silver.write(table, first_seq=first, last_seq=first + table.num_rows - 1)
        lake_s += t1 - t0
        pg_s += time.perf_counter() - t1
    for area in ("silver", *(rollup_area(plan, g) for g in plan.granularities)):
        compact(lake, area, pipeline)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f'VACUUM ANALYZE dash_silver."{pipeline}"')
        for g in plan.granularities:
            conn.execute(f'VACUUM ANALYZE dash_rollup_{g}."{pipeline}"')
    print(f"written in {time.perf_counter() - started:.0f} s (lake {args.rows / lake_s:,.0f} rows/s with rollups, "
          f"PostgreSQL {args.rows / pg_s:,.0f} rows/s with rollups)\n")

    span_us = args.rows * step_us
    mid = START_US + span_us // 2
    mid -= mid % 3_600_000_000
    window = {"from": str(mid / 1e6), "to": str((mid + 3_600_000_000) / 1e6)}
    queries = {
        "1m by device, all rows": {"bucket": "1m", "agg": "avg:temp_c,max:temp_c,count", "by": "device"},
        "10s, 1 h window": {"bucket": "10s", "agg": "avg:temp_c,count", **window},
    }
    engines = {
        # A generous time limit: this measures the engines, not the platform's 15 s limit.
        "DuckDB raw": DuckDBEngine(lake, pipeline, timeout_s=600),
        "DuckDB rollups": DuckDBEngine(lake, pipeline, plan=plan, timeout_s=600),
        "PostgreSQL raw": PostgresEngine(args.dsn, pipeline, timeout_s=600),
        "PostgreSQL rollups": PostgresEngine(args.dsn, pipeline, plan=plan, timeout_s=600),
    }
    print(f"{args.rows:,} rows, {DEVICES} devices, {args.runs} runs each, {os.cpu_count()} cores\n")
    print("| query | engine | p50 ms | best ms | rows out | vs DuckDB raw |")
    print("|---|---|---|---|---|---|")
    for name, params in queries.items():
        query = parse_query(params, SCHEMA)
        base = None
        answers = {}
        for engine_name, engine in engines.items():
            engine.run(query)  # warm
            times = timed(lambda e=engine, q=query: e.run(q), args.runs)
            answers[engine_name] = engine.run(query)["rows"]
            p50 = statistics.median(times)
            base = base or p50
            print(f"| {name} | {engine_name} | {p50 * 1000:,.1f} | {min(times) * 1000:,.1f} | "
                  f"{len(answers[engine_name]):,} | {base / p50:.2f}x |", flush=True)
        counts = {k: sum(r["count"] for r in v) for k, v in answers.items()}
        assert len(set(counts.values())) == 1, f"engines disagree on {name}: {counts}"
    for engine in engines.values():
        engine.close()
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS dash_silver."{pipeline}"')
        for g in plan.granularities:
            conn.execute(f'DROP TABLE IF EXISTS dash_rollup_{g}."{pipeline}"')
    pg_silver.close()
    import shutil

    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
