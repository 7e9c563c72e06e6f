"""The commands over pipelines themselves: `ls`, `deploy` (a pipeline or a dashboard),
`delete`, `restart` and `rotate-secret`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dash_ray.cli.connection import client_for
from dash_ray.cli.output import placement, print_json, table

__all__ = ["cmd_delete", "cmd_deploy", "cmd_ls", "cmd_restart", "cmd_rotate_secret"]


def cmd_ls(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        pipelines = client.list()
    rows = [{"id": p.id, "status": p.status, "restarts": p.restarts, "last_seq": p.counters.get("last_seq", 0),
             "waiting": p.waiting_in_log, "node": p.node if args.json else _short(p.node),
             "placement": p.placement if args.json else placement(p.placement, p.host),
             **({"host": p.host} if args.json else {}), "last_error": p.last_error} for p in pipelines]
    if args.json:
        print_json(rows)
    else:
        table(rows, empty="no pipelines; create one with `dash-ray deploy FILE.yaml`")
    return 0


def _short(node: str | None) -> str | None:
    """A node id as `ray list nodes` abbreviates it: its first 8 characters."""
    return node[:8] if node else None


def cmd_deploy(args: argparse.Namespace) -> int:
    from dash_ray.client import Dashboard

    with client_for(args) as client:
        pipeline = client.deploy(Path(args.file))
    if isinstance(pipeline, Dashboard):
        print(f"dashboard {pipeline.id}: saved (version {pipeline.version})")
        return 0
    print(f"pipeline {pipeline.id}: {pipeline.status} (version {pipeline.version})")
    if pipeline.ingest_secret:
        print(f"ingest secret (shown once, keep it): {pipeline.ingest_secret}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.delete(args.id, purge=args.purge)
    print(f"pipeline {args.id} deleted" + (", its stored data too" if args.purge else "; its stored data stays"))
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        pipeline = client.restart(args.id)
    print(f"pipeline {pipeline.id}: {pipeline.status}")
    return 0


def cmd_rotate_secret(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        secret = client.rotate_secret(args.id, grace_s=args.grace)
    print(f"new ingest secret (shown once, keep it): {secret}")
    if args.grace:
        print(f"the secret it replaces stays valid for {args.grace} s; secrets retired earlier keep their own grace")
    else:
        print("every earlier secret stopped working now")
    return 0
