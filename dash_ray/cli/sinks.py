"""`dash-ray sinks ID`: a pipeline's sinks as a table (state, breaker, counters, last error),
`--dead` their dead deliveries, `--redeliver NAME` queues a sink's dead deliveries again."""

from __future__ import annotations

import argparse

from dash_ray.cli.connection import client_for
from dash_ray.cli.output import print_json, table

__all__ = ["cmd_sinks"]

_COLUMNS = ("name", "kind", "state", "breaker", "delivered", "failed", "retrying", "queued", "dead",
            "last_delivered_seq", "last_error")


def cmd_sinks(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        if args.redeliver:
            count = client.redeliver(args.id, args.redeliver)
            print(f"sink {args.redeliver}: {count} dead deliver{'y' if count == 1 else 'ies'} queued again")
            return 0
        sinks = client.sinks(args.id)
    if args.json:
        print_json(sinks)
    elif args.dead:
        rows = [{"sink": s["name"], **d} for s in sinks for d in s["dead_deliveries"]]
        table(rows, empty="no dead deliveries", names=True)
    else:
        table([{k: s.get(k) for k in _COLUMNS} for s in sinks], empty="this pipeline has no sinks", names=True)
    return 0
