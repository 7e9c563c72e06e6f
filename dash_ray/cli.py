"""`dash-ray`: run the platform and manage pipelines from a shell. Thin over `client.py`; the
one place (with serve_app startup) that reads `DASH_*` variables, into `Settings`.

    dash-ray up [--demo]        start Ray, the registry and the web tier; print the URL
    dash-ray down               stop them (pipelines flush first); leaves nothing running
    dash-ray deploy FILE.yaml   create or update a pipeline; prints its ingest secret once
    dash-ray ls                 pipelines and their status
    dash-ray status [ID]        one pipeline in full, or the platform's health
    dash-ray records ID         the newest mapped records
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from dash_ray.client import Client
from dash_ray.errors import DashError, NotFoundError
from dash_ray.settings import Settings
from dash_ray.auth.tokens import hash_token, load_or_create_admin_token

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "port", None):
        overrides["port"] = args.port
    settings = Settings.from_env(**overrides)
    token = _admin_token(settings)
    return settings.with_(admin_token_hash=hash_token(token))


def _admin_token(settings: Settings) -> str:
    Path(settings.home).mkdir(parents=True, exist_ok=True)
    return load_or_create_admin_token(os.environ.get("DASH_ADMIN_TOKEN"), Path(settings.home) / "admin.token")


def _client(args: argparse.Namespace) -> Client:
    settings = Settings.from_env()
    url = os.environ.get("DASH_URL") or f"http://{settings.host}:{settings.port}"
    token = os.environ.get("DASH_TOKEN") or _admin_token(settings)
    return Client(url, token=token)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_up(args: argparse.Namespace) -> int:
    from dash_ray.dashboards import DEMO_DASHBOARD
    from dash_ray.sources.demo import DEMO_SPEC
    from serve_app.platform import up

    settings = _settings(args)
    started = time.monotonic()
    platform = up(settings)
    token_source = "$DASH_ADMIN_TOKEN" if os.environ.get("DASH_ADMIN_TOKEN") else str(
        Path(settings.home) / "admin.token")
    print(f"Dash is up at {platform.url} ({time.monotonic() - started:.1f} s)")
    print(f"  admin token: {token_source}")
    print(f"  state:       {settings.home}   lake: {settings.lake_url}")
    if args.demo:
        with Client(platform.url, token=_admin_token(settings)) as client:
            try:
                client.get("demo")
            except NotFoundError:
                client.deploy(DEMO_SPEC)
            client.put_dashboard(DEMO_DASHBOARD)
        print("  demo:        pipeline 'demo' is generating readings; watch them with")
        print(f"               dash-ray records demo, or open {platform.url}/dashboards/demo")
    print("Stop it with: dash-ray down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from serve_app.platform import down

    settings = Settings.from_env()
    print("Dash stopped." if down(settings) else "Dash was not running.")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from dash_ray.client import Dashboard

    with _client(args) as client:
        pipeline = client.deploy(Path(args.file))
    if isinstance(pipeline, Dashboard):
        print(f"dashboard {pipeline.id}: saved (version {pipeline.version})")
        return 0
    print(f"pipeline {pipeline.id}: {pipeline.status} (version {pipeline.version})")
    if pipeline.ingest_secret:
        print(f"ingest secret (shown once, keep it): {pipeline.ingest_secret}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        pipelines = client.list()
    print(f"{'ID':<24} {'STATUS':<11} {'RESTARTS':>8} {'LAST SEQ':>10}  LAST ERROR")
    for p in pipelines:
        print(f"{p.id:<24} {p.status:<11} {p.restarts:>8} {p.counters.get('last_seq', 0):>10}  "
              f"{p.last_error or ''}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.id is None:
            _print(client.health())
        else:
            p = client.get(args.id)
            _print({"id": p.id, "status": p.status, "restarts": p.restarts, "last_error": p.last_error,
                    "version": p.version, "counters": p.counters, "spec": p.spec})
    return 0


def cmd_records(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for record in client.records(args.id, limit=args.limit):
            print(json.dumps(record, default=str))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dash-ray", description="Real-time data pipelines on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the platform (local Ray unless DASH_RAY_ADDRESS is set)")
    up.add_argument("--demo", action="store_true", help="also deploy a demo pipeline fed by a generator")
    up.add_argument("--port", type=int, help="HTTP port (default $DASH_PORT or 8000)")
    up.set_defaults(run=cmd_up)
    sub.add_parser("down", help="stop the platform").set_defaults(run=cmd_down)
    deploy = sub.add_parser("deploy", help="create or update a pipeline from a YAML/JSON spec")
    deploy.add_argument("file")
    deploy.set_defaults(run=cmd_deploy)
    sub.add_parser("ls", help="list pipelines").set_defaults(run=cmd_ls)
    status = sub.add_parser("status", help="a pipeline's status, or the platform's")
    status.add_argument("id", nargs="?")
    status.set_defaults(run=cmd_status)
    records = sub.add_parser("records", help="a pipeline's newest mapped records")
    records.add_argument("id")
    records.add_argument("--limit", type=int, default=20)
    records.set_defaults(run=cmd_records)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except DashError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for problem in getattr(exc, "problems", ()):
            print(f"  {problem}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
