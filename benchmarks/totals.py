"""Benchmark: what keeping a pipeline's totals (`dash_ray.pipeline.totals`) costs a flush.

    .venv/bin/python benchmarks/totals.py [--flushes 40] [--records 1000] [--rounds 3]

A PipelineCore (file log with fsync, a local lake in a temporary folder, the defaults
otherwise) takes `--records` records per call and is flushed after each (a range of that many
records: silver, bronze, keys, log trim, and now `_totals.json` before the mark). Rows: the
median time of one whole flush, and the median time of the totals write alone (`TotalsFile.save`
into a second local lake on the same disk: temporary file, fsync, rename, folder fsync),
measured in the same round; the ratio is the write's share of a
flush. Medians over `--rounds` rounds, each on fresh folders.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from dash_ray.ingest.batch import RawBatch  # noqa: E402
from dash_ray.lake import Lake  # noqa: E402
from dash_ray.pipeline.core import PipelineCore  # noqa: E402
from dash_ray.pipeline.totals import Totals, TotalsFile  # noqa: E402
from dash_ray.spec import parse_spec  # noqa: E402

SPEC = {"id": "bench", "mapping": {"fields": {"time": {"path": "$.ts", "type": "timestamp"},
                                              "device": {"path": "$.device", "type": "string"},
                                              "temp_c": {"path": "$.temp", "type": "double"}}},
        "flush": {"records": 1_000_000, "seconds": 3600}}


def payload(n: int) -> bytes:
    return b"".join(orjson.dumps({"ts": "2026-01-01T00:00:00Z", "device": f"d{i % 50}", "temp": 20.0 + i % 9}) + b"\n"
                    for i in range(n))


async def one_round(flushes: int, records: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="dash-bench-totals-") as folder:
        core = PipelineCore(parse_spec(SPEC), wal_dir=Path(folder) / "wal", lake=Lake.from_url(f"{folder}/lake"))
        await core.start()
        data = payload(records)
        flush_s, save_s = [], []
        side = TotalsFile(Lake.from_url(f"{folder}/side-lake"), "bench")
        for _ in range(flushes):
            await core.ingest([RawBatch(payload=data, count=records, received_at_us=time.time_ns() // 1000)])
            started = time.perf_counter()
            await core.flush()
            flush_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            side.save(Totals(seq=1, mapped=2), Totals(seq=3, mapped=4))
            save_s.append(time.perf_counter() - started)
        await core.close()
        return statistics.median(flush_s), statistics.median(save_s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flushes", type=int, default=40)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [asyncio.run(one_round(args.flushes, args.records)) for _ in range(args.rounds)]
    flush = statistics.median(r[0] for r in rounds)
    save = statistics.median(r[1] for r in rounds)
    print(f"totals cost per flush ({args.records} records a flush, {args.flushes} flushes, "
          f"median of {args.rounds} rounds; file log with fsync, local lake)")
    print("| step | median ms | share of a flush |")
    print("|------|-----------|------------------|")
    print(f"| whole flush (totals write included) | {flush * 1000:.2f} | 1.00 |")
    print(f"| _totals.json write (fsync) alone | {save * 1000:.2f} | {save / flush:.2f} |")


if __name__ == "__main__":
    main()
