"""A/B of one benchmark across two trees in one run: an earlier commit (A, checked out into a
temporary git worktree that is removed afterwards) and the working tree (B). The rounds
alternate A, B, B, A, ... so a load that drifts during the run falls on both alike; each tree's
own copy of the benchmark runs with that tree first on PYTHONPATH (so the Ray workers and the
platform it starts import that tree too). Prints every round's figure of the chosen column,
the medians and B/A.

    .venv/bin/python benchmarks/ab.py --before 201494b mapping -- --quick
    .venv/bin/python benchmarks/ab.py --before 201494b ingest --rounds 2 -- --quick --no-glue

The benchmark's table is read by its header: `--keys` name the columns that identify a row,
`--metric` the column compared (defaults per benchmark below).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"mapping": (["batch", "impl"], "records/s"), "ingest": (["path", "kind", "conns"], "records/s"),
            "log": (["backend", "appenders", "batch"], "records/s"), "mqtt": (["row"], "messages/s")}


def table_rows(text: str, keys: list[str], metric: str) -> dict[tuple[str, ...], float]:
    """The rows of the first table whose header names `keys` and `metric`: key cells -> figure."""
    rows: dict[tuple[str, ...], float] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            header = None if rows else header
            continue
        if header is None:
            if all(k in cells for k in [*keys, metric]):
                header = cells
            continue
        if set(line.strip()) <= set("|-: "):
            continue  # the rule under the header
        if len(cells) != len(header):
            break
        figure = re.sub(r"[,x ]", "", cells[header.index(metric)])
        try:
            rows[tuple(cells[header.index(k)] for k in keys)] = float(figure)
        except ValueError:
            continue
    return rows


def run(tree: Path, bench: str, args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / f"{bench}.py"), *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{bench} in {tree} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the commit of tree A")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", help="comma-separated key columns")
    parser.add_argument("--metric")
    parser.add_argument("bench", choices=sorted(DEFAULTS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then the benchmark's own arguments")
    opts = parser.parse_args()
    keys, metric = DEFAULTS[opts.bench]
    keys = opts.keys.split(",") if opts.keys else keys
    metric = opts.metric or metric
    extra = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    commit = subprocess.run(["git", "rev-parse", "--short", opts.before], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="dash-ab-") as folder:
        before = Path(folder) / "a"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(before), commit], cwd=ROOT, check=True)
        try:
            figures: dict[str, list[dict[tuple[str, ...], float]]] = {"A": [], "B": []}
            for n in range(opts.rounds):
                order = [("A", before), ("B", ROOT)] if n % 2 == 0 else [("B", ROOT), ("A", before)]
                for name, tree in order:
                    rows = table_rows(run(tree, opts.bench, extra), keys, metric)
                    if not rows:
                        raise SystemExit(f"no table with {keys} and {metric!r} in {name}'s output")
                    figures[name].append(rows)
                    print(f"round {n + 1} {name}: " + "; ".join(f"{' '.join(k)} {v:,.0f}" for k, v in rows.items()),
                          flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)
    print(f"\n{opts.bench} {' '.join(extra)}: A = {commit}, B = {head} (working tree), {opts.rounds} rounds, "
          f"load average before the end {os.getloadavg()[0]:.1f}, medians of {metric}")
    width = max(len(" ".join(k)) for k in figures["A"][0])
    print(f"{'row':<{width}} | {'A':>12} | {'B':>12} |   B/A")
    print("-" * (width + 38))
    for key in figures["A"][0]:
        a = statistics.median(r[key] for r in figures["A"] if key in r)
        b_values = [r[key] for r in figures["B"] if key in r]
        b = statistics.median(b_values) if b_values else float("nan")
        print(f"{' '.join(key):<{width}} | {a:>12,.0f} | {b:>12,.0f} | {b / a:5.2f}")


if __name__ == "__main__":
    main()
