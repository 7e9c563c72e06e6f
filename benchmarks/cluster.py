"""Benchmark: Dash on a multi-node Ray cluster on this machine: signed ingest records/s with one
and with two ingestor nodes, and the time from losing an ingestor node to the first accepted
ingest on the pipelines it ran.

    .venv/bin/python benchmarks/cluster.py [--pipelines 4] [--seconds 10] [--batch 50] [--rounds 3]

The cluster is `ray.cluster_utils.Cluster` on loopback (tests/cluster/nodes.py): a head node
labelled `web` (the one web replica) and ingestor nodes, the platform joined to it with
`dash-ray up --address`, write-ahead logs in NATS JetStream (127.0.0.1:4222), state folder and
lake in one shared folder. Steps:

1. one ingestor node: `--pipelines` pipelines, one loader thread each, for `--seconds`;
2. a second ingestor node joins; half the pipelines are restarted by hand and land on it (the
   placement picks the least-loaded node); the same load again;
3. the node running pipeline 0 is killed (every process, SIGKILL) under load: per moved
   pipeline, the time from the node's processes gone to the first 202 of a request sent after.

Read the ratio honestly: every node, the loaders, NATS and the web replica share this
machine's cores (2 here), so a second ingestor node adds processes, not CPU; on real machines
each node brings its own. The ratio is against step 1 of the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cluster.joined import OnCluster, start_platform
from tests.cluster.load import Load
from tests.cluster.nodes import Nodes, remove_tree
from tests.conftest import ADMIN_TOKEN
from tests.waiting import wait_for

SPEC = {"mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}}, "storage": {"silver": "lake"}}


def _running(on: OnCluster, ids: list[str]) -> dict[str, str]:
    with on.client() as client:
        def placed() -> dict[str, str] | None:
            found = {p.id: p.node for p in client.list() if p.id in ids and p.status == "running" and p.node}
            return found if len(found) == len(ids) else None
        return wait_for(placed, timeout=180, what="every pipeline running")


def _measure(on: OnCluster, secrets: dict[str, str], seconds: float, batch: int, rounds: int) -> float:
    """The median over `rounds` rounds of the acknowledged records/s of every loader together."""
    return statistics.median(_round(on, secrets, seconds, batch) for _ in range(rounds))


def _round(on: OnCluster, secrets: dict[str, str], seconds: float, batch: int) -> float:
    loads = [Load(on.url, ADMIN_TOKEN, pid, secret, size=batch).start() for pid, secret in secrets.items()]
    try:
        time.sleep(2.0)  # warm-up: connections, the first flushes
        since = time.monotonic()
        time.sleep(seconds)
        until = time.monotonic()
    finally:
        for load in loads:
            load.stop()
    return sum(load.records_per_s(since, until) for load in loads)


def _failover(on: OnCluster, secrets: dict[str, str], victim: str, moved: list[str], batch: int) -> dict[str, float]:
    loads = {pid: Load(on.url, ADMIN_TOKEN, pid, secret, size=batch).start() for pid, secret in secrets.items()}
    try:
        wait_for(lambda: all(load.acked for load in loads.values()), timeout=60, what="ingest under way")
        on.nodes.remove(victim)
        lost = time.monotonic()
        firsts = wait_for(lambda: [loads[pid].first_ok_after(lost) for pid in moved] if all(
            loads[pid].first_ok_after(lost) for pid in moved) else None, timeout=180, what="the moved pipelines")
    finally:
        for load in loads.values():
            load.stop()
    return {pid: first - lost for pid, first in zip(moved, firsts, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=50, help="records per request")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per cell (the median is shown)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dash-bench-cluster-"))
    nodes = Nodes(head_role="web")
    on = None
    try:
        nodes.add("ing1", "ingestor")
        on = start_platform(nodes, root, web_replicas=1)
        ids = [on.pipeline_id("bench") for _ in range(args.pipelines)]
        with on.client() as client:
            secrets = {pid: str(client.deploy({"id": pid, **SPEC}).ingest_secret) for pid in ids}
        _running(on, ids)
        one = _measure(on, secrets, args.seconds, args.batch, args.rounds)

        nodes.add("ing2", "ingestor")
        with on.client() as client:
            for pid in ids[::2]:
                client.restart(pid)
        where = _running(on, ids)
        spread = {node: sum(1 for n in where.values() if n == node) for node in set(where.values())}
        two = _measure(on, secrets, args.seconds, args.batch, args.rounds)

        [victim] = [name for name, node in nodes.ids.items() if node == where[ids[0]]]
        moved = [pid for pid, node in where.items() if node == where[ids[0]]]
        times = _failover(on, secrets, victim, moved, args.batch)
    finally:
        if on is not None:
            on.stop()
        else:
            nodes.close()
        remove_tree(root)

    print(f"\nDash on a loopback Ray cluster: {args.pipelines} pipelines, one loader thread each, "
          f"{args.batch} records/request, median of {args.rounds} rounds of {args.seconds:.0f} s per cell; "
          "JetStream log; nodes, loaders and servers all on this machine's cores")
    print(f"{'step':<44} {'records/s':>10} {'ratio':>6}")
    print(f"{'one ingestor node':<44} {one:>10.0f} {1.0:>6.2f}")
    print(f"{'two ingestor nodes (pipelines per node: ' + ','.join(map(str, sorted(spread.values()))) + ')':<44} "
          f"{two:>10.0f} {two / one if one else 0:>6.2f}")
    print(f"\n{'failover':<44} {'seconds':>10}")
    for pid in moved:
        print(f"{'node lost -> first 202 on moved ' + pid:<44} {times[pid]:>10.1f}")


if __name__ == "__main__":
    main()
