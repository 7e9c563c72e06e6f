"""The commands over a pipeline's data: records, tail, query, replay and dead letters, and
replay jobs (`commandline.py` wires them to their arguments)."""

from __future__ import annotations

import argparse
from typing import Any

from dash_ray.cli.connection import CliError, client_for
from dash_ray.cli.output import print_json, table
from dash_ray.client import Client

__all__ = ["cmd_dead", "cmd_dead_replay", "cmd_job", "cmd_query", "cmd_records", "cmd_replay", "cmd_tail"]


def cmd_records(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        records = client.records(args.id, limit=args.limit)
    if args.json:
        print_json(records)
    else:
        table([{"seq": r["seq"], "time": r["time"], **r["data"]} for r in records], empty="no records yet",
               names=True)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        rows = client.query(args.id, start=args.start, end=args.end, fields=args.fields, bucket=args.bucket,
                            agg=args.agg, by=args.by, limit=args.limit, order=args.order,
                            filter=args.filter)
    if args.json:
        print_json(rows)
    else:
        table(rows, empty="no rows", names=True)
    return 0


def _job(client: Client, job: dict[str, Any], args: argparse.Namespace) -> int:
    if args.wait:
        job = client.wait_job(job.get("job") or job["id"])
    if getattr(args, "json", False):
        print_json(job)
        return 1 if job["state"] == "failed" else 0
    job_id = job.get("job") or job.get("id")
    print(f"job {job_id}: {job['state']} ({job.get('done', 0)}/{job.get('total', 0)})"
          + (f": {job['error']}" if job.get("error") else ""))
    if job.get("matched") is not None:
        print(f"  asked: {_asked(job)}, {job['matched']} stored record(s)")
        print(f"  rewritten: {job.get('total', 0)} record(s) of the stored files holding them: "
              f"{job.get('replayed', 0)} mapped again, {job.get('kept', 0)} kept as stored")
    if job.get("note"):
        print(f"  note: {job['note']}")
    if not args.wait and job["state"] == "running":
        print(f"  follow it with: dash-ray job {job_id}")
    return 1 if job["state"] == "failed" else 0


def _asked(job: dict[str, Any]) -> str:
    asked = job.get("asked") or {}
    if job.get("kind") == "dead-replay":
        return "every dead letter"
    if "from_seq" in asked or "to_seq" in asked:
        return f"seq {asked.get('from_seq', 1)}..{asked.get('to_seq', 'the last stored')}"
    for prefix, what in (("", "event time"), ("received_", "receive time")):
        if f"{prefix}from" in asked or f"{prefix}to" in asked:
            return f"{what} {asked.get(prefix + 'from', 'the start')} to {asked.get(prefix + 'to', 'now')}"
    return "everything stored"


def cmd_replay(args: argparse.Namespace) -> int:
    kinds = (("--from/--to", args.start or args.end),
             ("--received-from/--received-to", args.received_start or args.received_end),
             ("--from-seq/--to-seq", args.from_seq is not None or args.to_seq is not None))
    given = [flag for flag, value in kinds if value]
    if len(given) > 1:
        raise CliError(f"give one of --from/--to (event time), --received-from/--received-to (receive time) or "
                       f"--from-seq/--to-seq, not {' and '.join(given)}")
    with client_for(args) as client:
        job = client.replay(args.id, start=args.start, end=args.end, received_start=args.received_start,
                            received_end=args.received_end, from_seq=args.from_seq, to_seq=args.to_seq)
        return _job(client, job, args)


def cmd_dead(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        rows = client.dead(args.id, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        table([{k: r.get(k) for k in ("seq", "received_at", "field", "rule", "reason")} for r in rows],
               empty="no dead letters")
    return 0


def cmd_dead_replay(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        return _job(client, client.replay_dead(args.id), args)


def cmd_job(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        return _job(client, client.job(args.id), args)


def cmd_tail(args: argparse.Namespace) -> int:
    """Follow a pipeline's live records (one JSON line each with --json), resuming by itself
    after a disconnect, until interrupted."""
    with client_for(args) as client:
        after = args.after
        if after is None and args.last:
            newest = client.records(args.id, limit=args.last)
            after = newest[0]["seq"] - 1 if newest else None
        try:
            for record in client.stream(args.id, after=after):
                if args.json:
                    print_json(record, compact=True)
                else:
                    fields = " ".join(f"{k}={v}" for k, v in record["data"].items())
                    print(f"{record['seq']:>8}  {record['time']}  {fields}", flush=True)
        except KeyboardInterrupt:
            pass
    return 0
