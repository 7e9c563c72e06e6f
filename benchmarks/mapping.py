"""Benchmark: the mapping engine against hand-written per-record Python doing the same work.

    .venv/bin/python benchmarks/mapping.py [--quick] [--alternatives]

The spec is the "realistic" one of the performance issue: an ISO `time`, five typed path
fields (one required, one defaulted), two expressions, a filter and two rules, over records
of ~150 bytes. The baseline parses each record with orjson and does the same extraction,
casts, expressions, filter and rules in plain Python, then builds the same Arrow table (the
engine's output); it handles only this spec's happy path, so it is a lower bound on what
hand-written code costs. Each batch size runs for about 1.5 s of wall time per
implementation; figures are records/s over all batches and p50/p99 of one batch's latency.
Everything runs on one thread (the engine uses one core per call).

`--alternatives` adds the two designs measured before the engine was chosen: the same mapping
as hand-written DuckDB SQL (json functions, a prepared statement, one thread), and
pyarrow.json extraction alone (no casts, expressions, filter or rules), which is fastest but
reads a whole batch with one type per column and fails the batch on any odd record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import re
import statistics
import time
from collections.abc import Callable

import orjson
import pyarrow as pa

from dash_ray.mapping import compile_mapping
from dash_ray.spec import MappingSpec

SPEC = {
    "fields": {
        "time": {"path": "$.ts", "type": "timestamp"},
        "device": {"path": "$.device.id", "type": "string", "required": True},
        "site": {"path": "$.device.site", "type": "string", "default": "unknown"},
        "temp_c": {"path": "$.readings.temp", "type": "double"},
        "humidity": {"path": "$.readings.humidity", "type": "double"},
        "status": {"path": "$.status", "type": "string"},
        "temp_f": {"expr": "round(temp_c * 9 / 5 + 32, 1)", "type": "double"},
        "level": {"expr": "CASE WHEN temp_c > 30 THEN 'hot' WHEN temp_c < 5 THEN 'cold' ELSE 'ok' END",
                  "type": "string"},
    },
    "filter": "device <> 'test-rig'",
    "validate": [{"field": "temp_c", "min": -50, "max": 60}, {"field": "device", "regex": "^[a-z]+-[0-9]+$"}],
}
BATCH_SIZES = (1, 100, 1000, 10000)
TIMESTAMP = pa.timestamp("us", tz="UTC")


def records(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        device = "test-rig" if i % 50 == 0 else f"sensor-{rng.randrange(40)}"
        out.append(orjson.dumps({
            "ts": f"2024-05-01T12:{i // 60 % 60:02d}:{i % 60:02d}.{rng.randrange(1000):03d}Z",
            "device": {"id": device, "site": rng.choice(["lab", "roof", "cellar"])},
            "readings": {"temp": round(rng.uniform(-10, 45), 2), "humidity": round(rng.uniform(0, 100), 1)},
            "status": rng.choice(["ok", "warn", "fail"]),
            "fw": f"2.{rng.randrange(10)}.{rng.randrange(100)}",
        }).decode())
    return out


def batch_of(raws: list[str], first_seq: int) -> pa.Table:
    n = len(raws)
    return pa.table({
        "seq": pa.array(range(first_seq, first_seq + n), pa.int64()),
        "received_at": pa.array([1_714_564_800_000_000] * n, TIMESTAMP),
        "raw": pa.array(raws, pa.string()),
    })


# -- the baseline: hand-written per-record code for SPEC --------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_US = dt.timedelta(microseconds=1)
_DEVICE = re.compile(r"^[a-z]+-[0-9]+$")


def _double(value):
    if type(value) in (int, float):
        return float(value)
    if type(value) is str:
        return float(value)
    raise ValueError(value)


def baseline(batch: pa.Table) -> tuple[pa.Table, list[tuple]]:
    seqs = batch.column("seq").to_pylist()
    received = batch.column("received_at").cast(pa.int64()).to_pylist()
    cols: dict[str, list] = {k: [] for k in ("seq", "time", "device", "site", "temp_c", "humidity", "status",
                                             "temp_f", "level")}
    dead = []
    for seq, rec_at, raw in zip(seqs, received, batch.column("raw").to_pylist(), strict=True):
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            dead.append((seq, "json"))
            continue
        if type(doc) is not dict:
            dead.append((seq, "object"))
            continue
        device_obj = doc.get("device")
        readings = doc.get("readings")
        device_obj = device_obj if type(device_obj) is dict else {}
        readings = readings if type(readings) is dict else {}
        try:
            ts = doc.get("ts")
            when = rec_at if ts is None else (
                dt.datetime.fromisoformat(ts) - _EPOCH) // _US
            device = device_obj.get("id")
            if device is None:
                dead.append((seq, "required"))
                continue
            site = device_obj.get("site") or "unknown"
            temp = readings.get("temp")
            temp = None if temp is None else _double(temp)
            humidity = readings.get("humidity")
            humidity = None if humidity is None else _double(humidity)
            status = doc.get("status")
        except (ValueError, TypeError):
            dead.append((seq, "type"))
            continue
        temp_f = None if temp is None else round(temp * 9 / 5 + 32, 1)
        level = None if temp is None else ("hot" if temp > 30 else "cold" if temp < 5 else "ok")
        if device == "test-rig":
            continue
        if temp is not None and (temp < -50 or temp > 60):
            dead.append((seq, "min/max"))
            continue
        if not _DEVICE.search(device):
            dead.append((seq, "regex"))
            continue
        for key, value in (("seq", seq), ("time", when), ("device", device), ("site", site), ("temp_c", temp),
                           ("humidity", humidity), ("status", status), ("temp_f", temp_f), ("level", level)):
            cols[key].append(value)
    table = pa.table({
        "seq": pa.array(cols["seq"], pa.int64()), "time": pa.array(cols["time"], TIMESTAMP),
        **{k: pa.array(cols[k], pa.float64()) for k in ("temp_c", "humidity", "temp_f")},
        **{k: pa.array(cols[k], pa.string()) for k in ("device", "site", "status", "level")},
    })
    return table, dead




# -- the alternatives measured before choosing the engine (--alternatives) -------------------
# DuckDB: the same mapping as hand-written SQL over DuckDB's json functions, prepared once.
# A prepared statement binds the registered table it was prepared on, so the batch is handed
# to it through an object whose Arrow stream is swapped per call. One thread, no file access.
# The prefilter reproduces strict JSON (DuckDB's reader accepts NaN, Infinity and trailing
# commas), which the engine gets from orjson.

DUCKDB_SQL = r"""
WITH j AS (SELECT seq, received_at, raw, json_valid(raw) AS ok,
                  regexp_matches(raw, '(?i)[:\[,]\s*[-+]?(nan|inf)|,\s*[\]}]|[eE]\+?[0-9]{3}|[0-9]{100}') AS lax
           FROM batch),
e AS (SELECT *, CASE WHEN ok THEN json_type(raw) END AS kind,
             CASE WHEN ok AND json_type(raw) = 'OBJECT' THEN json_extract(raw,
               ['$.ts', '$.device.id', '$.device.site', '$.readings.temp', '$.readings.humidity', '$.status'])
             END AS v FROM j),
t AS (SELECT *, json_type(v[1]) t1, json_type(v[2]) t2, json_type(v[3]) t3, json_type(v[4]) t4,
             json_type(v[5]) t5, json_type(v[6]) t6 FROM e),
c AS (SELECT *,
  CASE t1 WHEN 'VARCHAR' THEN try_cast(json_extract_string(v[1], '$') AS TIMESTAMPTZ)
          WHEN 'BIGINT' THEN to_timestamp(v[1]::BIGINT) WHEN 'DOUBLE' THEN to_timestamp(v[1]::DOUBLE) END AS ts,
  CASE t2 WHEN 'VARCHAR' THEN json_extract_string(v[2], '$') WHEN 'BIGINT' THEN v[2]::VARCHAR
          WHEN 'DOUBLE' THEN v[2]::VARCHAR WHEN 'BOOLEAN' THEN v[2]::VARCHAR END AS device,
  coalesce(CASE t3 WHEN 'VARCHAR' THEN json_extract_string(v[3], '$') WHEN 'BIGINT' THEN v[3]::VARCHAR
          WHEN 'DOUBLE' THEN v[3]::VARCHAR WHEN 'BOOLEAN' THEN v[3]::VARCHAR END, 'unknown') AS site,
  CASE t4 WHEN 'DOUBLE' THEN v[4]::DOUBLE WHEN 'BIGINT' THEN v[4]::DOUBLE
          WHEN 'VARCHAR' THEN try_cast(json_extract_string(v[4], '$') AS DOUBLE) END AS temp_c,
  CASE t5 WHEN 'DOUBLE' THEN v[5]::DOUBLE WHEN 'BIGINT' THEN v[5]::DOUBLE
          WHEN 'VARCHAR' THEN try_cast(json_extract_string(v[5], '$') AS DOUBLE) END AS humidity,
  CASE t6 WHEN 'VARCHAR' THEN json_extract_string(v[6], '$') WHEN 'BIGINT' THEN v[6]::VARCHAR END AS status
  FROM t),
x AS (SELECT *, round(temp_c * 9 / 5 + 32, 1) AS temp_f,
             CASE WHEN temp_c > 30 THEN 'hot' WHEN temp_c < 5 THEN 'cold' ELSE 'ok' END AS level FROM c),
r AS (SELECT *, CASE WHEN NOT ok OR lax THEN 'json' WHEN kind <> 'OBJECT' THEN 'object'
       WHEN t1 <> 'NULL' AND ts IS NULL THEN 'type'
       WHEN t2 IS NULL OR t2 = 'NULL' THEN 'required' WHEN device IS NULL THEN 'type'
       WHEN t3 NOT IN ('NULL') AND site IS NULL THEN 'type'
       WHEN t4 NOT IN ('NULL') AND temp_c IS NULL THEN 'type'
       WHEN t5 NOT IN ('NULL') AND humidity IS NULL THEN 'type'
       WHEN t6 NOT IN ('NULL') AND status IS NULL THEN 'type'
       WHEN NOT coalesce(device <> 'test-rig', false) THEN 'filtered'
       WHEN temp_c < -50 THEN 'min' WHEN temp_c > 60 THEN 'max'
       WHEN NOT regexp_matches(device, '^[a-z]+-[0-9]+$') THEN 'regex' END AS rule FROM x)
SELECT seq, coalesce(ts, received_at) AS time, device, site, temp_c, humidity, status, temp_f, level, rule,
       CASE WHEN rule = 'type' THEN 'cannot cast ' || v[4] || ' to double' END AS reason
FROM r
"""


class _Swappable:
    """An Arrow stream source whose table can change between executions of one plan."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self.table.__arrow_c_stream__(requested_schema)


def duckdb_mapper(first: pa.Table) -> Callable[[pa.Table], object]:
    import duckdb
    import pyarrow.compute as pc

    con = duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False,
                                 "autoinstall_known_extensions": False, "threads": 1})
    source = _Swappable(first)
    con.register("batch", source)
    con.execute("PREPARE mapping AS " + DUCKDB_SQL)

    def apply(batch: pa.Table) -> object:
        source.table = batch
        out = con.sql("EXECUTE mapping").to_arrow_table()
        rule = out.column("rule")
        return out.filter(pc.is_null(rule)), out.filter(pc.not_equal(rule, "filtered"))

    apply.close = con.close  # type: ignore[attr-defined]
    return apply


def pyarrow_json_mapper() -> Callable[[pa.Table], object]:
    """Extraction only, with pyarrow.json: one type per column for the whole batch (a record
    whose value has another type, or one invalid line, fails the whole batch)."""
    import pyarrow.json as pj

    schema = pa.schema([
        ("ts", pa.string()),
        ("device", pa.struct([("id", pa.string()), ("site", pa.string())])),
        ("readings", pa.struct([("temp", pa.float64()), ("humidity", pa.float64())])),
        ("status", pa.string()),
    ])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")

    def extract(batch: pa.Table) -> object:
        text = "\n".join(batch.column("raw").to_pylist()).encode()
        return pj.read_json(io.BytesIO(text), parse_options=options)

    return extract


# -- measuring --------------------------------------------------------------------------------


def measure(fn: Callable[[pa.Table], object], batches: list[pa.Table], seconds: float) -> tuple[float, float, float]:
    """records/s, p50 ms, p99 ms over repeated passes through `batches` for ~`seconds`."""
    fn(batches[0])  # warm up
    latencies = []
    records_done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(latencies) < 5:
        for batch in batches:
            t0 = time.perf_counter()
            fn(batch)
            latencies.append(time.perf_counter() - t0)
            records_done += batch.num_rows
        if len(latencies) > 20000:
            break
    total = sum(latencies)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return records_done / total, statistics.median(latencies) * 1e3, p99 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.3 s per cell instead of 1.5 s")
    parser.add_argument("--alternatives", action="store_true",
                        help="also measure the DuckDB-SQL and pyarrow.json prototypes")
    args = parser.parse_args()
    seconds = 0.3 if args.quick else 1.5
    mapping = compile_mapping(MappingSpec.model_validate(SPEC))
    raws = records(20000)
    check = batch_of(raws[:1000], 1)
    implementations: dict[str, Callable[[pa.Table], object]] = {"baseline": baseline, "engine": mapping.apply}
    if args.alternatives:
        duck = duckdb_mapper(check)
        implementations["duckdb"] = duck
        implementations["pa.json*"] = pyarrow_json_mapper()
        assert duck(check)[0].num_rows == mapping.apply(check).rows.num_rows
    rows, _ = baseline(check)
    assert rows.num_rows == mapping.apply(check).rows.num_rows
    print(f"records: ~{sum(map(len, raws)) / len(raws):.0f} bytes; mapping: {len(SPEC['fields'])} fields, "
          f"filter, {len(SPEC['validate'])} rules; {seconds} s per cell")
    header = f"{'batch':>6} | {'impl':<8} | {'records/s':>11} | {'p50 ms':>8} | {'p99 ms':>8} | {'vs baseline':>11}"
    print(header)
    print("-" * len(header))
    for size in BATCH_SIZES:
        batches = [batch_of(raws[i:i + size], i + 1) for i in range(0, min(len(raws), max(size, 2000)), size)]
        base = None
        for name, fn in implementations.items():
            rate, p50, p99 = measure(fn, batches, seconds)
            base = base or rate
            print(f"{size:>6} | {name:<8} | {rate:>11,.0f} | {p50:>8.3f} | {p99:>8.3f} | {rate / base:>10.2f}x")
    if args.alternatives:
        print("* pa.json: extraction only (no casts, expressions, filter or rules); fails a whole batch "
              "on one invalid line or a value of another type")
        duck.close()


if __name__ == "__main__":
    main()
