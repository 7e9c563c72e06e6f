"""The commands that start, stop and look at the platform: `up` (with `--demo`), `down` and
`status`. `up` and `down` read the environment into `Settings` and import the web tier when
they run; `status` talks to the running platform like every other command."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from dash_ray.auth.tokens import hash_token, load_or_create_admin_token
from dash_ray.cli.connection import client_for
from dash_ray.cli.output import print_pipeline, print_platform
from dash_ray.client import Client
from dash_ray.errors import NotFoundError
from dash_ray.log.namespace import platform_log_namespace
from dash_ray.settings import ClientEnv, Settings

__all__ = ["cmd_down", "cmd_status", "cmd_up", "start_demo"]


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "address", None):
        overrides["ray_address"] = args.address
    settings = Settings.from_env(**overrides)
    # Before the admin token is made: a home with none yet is a new platform's.
    settings = settings.with_(log_namespace=platform_log_namespace(
        Path(settings.home), legacy=settings.namespace, explicit=settings.log_namespace, pg_dsn=settings.pg_dsn))
    token = _admin_token(settings)
    return settings.with_(admin_token_hash=hash_token(token))


def _admin_token(settings: Settings) -> str:
    """For `up` only: the admin token, created in the home folder when there is none."""
    Path(settings.home).mkdir(parents=True, exist_ok=True)
    return load_or_create_admin_token(ClientEnv.from_env().admin_token, Path(settings.home) / "admin.token")


def start_demo(client: Client, url: str) -> None:
    """`up --demo`: the demo pipeline, the pipeline its webhook sink sends alerts to (over
    `url`, this platform's own), and the demo dashboard, each made only when there is none
    (a dashboard the user edited stays as they left it)."""
    from dash_ray.dashboards import DEMO_DASHBOARD
    from dash_ray.sources.demo import DEMO_ALERTS_SECRET, DEMO_ALERTS_SPEC, DEMO_SPEC, demo_alert_sink

    try:
        client.get(DEMO_ALERTS_SPEC["id"])
    except NotFoundError:
        alerts = client.deploy(DEMO_ALERTS_SPEC)
        if alerts.ingest_secret is not None:
            client.put_secret(DEMO_ALERTS_SECRET, alerts.ingest_secret)
    try:
        client.get("demo")
    except NotFoundError:
        client.deploy({**DEMO_SPEC, "sinks": [demo_alert_sink(f"{url}/v1/hooks/{DEMO_ALERTS_SPEC['id']}")]})
    try:
        client.dashboard("demo")
    except NotFoundError:
        client.put_dashboard(DEMO_DASHBOARD)


def cmd_up(args: argparse.Namespace) -> int:
    from serve_app.startup import up

    settings = _settings(args)
    started = time.monotonic()
    platform = up(settings)
    admin_token = ClientEnv.from_env().admin_token
    token_source = "$DASH_ADMIN_TOKEN" if admin_token else str(Path(settings.home) / "admin.token")
    print(f"Dash is up at {platform.url} ({time.monotonic() - started:.1f} s)")
    print(f"  admin token: {token_source}")
    print(f"  state:       {settings.home}   lake: {settings.lake_url}")
    print(f"  ray:         {platform.ray_address}" + ("" if platform.local is None else " (local, loopback only)"))
    if args.demo:
        with Client(platform.url, token=_admin_token(settings)) as client:
            start_demo(client, platform.url)
        print("  demo:        pipeline 'demo' is generating readings; watch them with")
        print(f"               dash-ray records demo, or open {platform.url}/dashboards/demo")
        print("               its sink 'humid' sends humid readings out as signed webhooks, to pipeline")
        print("               'demo-alerts' here: dash-ray sinks demo, dash-ray records demo-alerts")
    print("Stop it with: dash-ray down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """A local instance is stopped by its processes alone, without joining Ray (importing and
    connecting to it costs seconds): every record a pipeline acknowledged is in its
    write-ahead log, and the next `up` stores what the lake does not have yet. `--drain S`
    first asks the pipelines to flush (at most S s), as `down` on a cluster always does. An
    instance whose run file (or whole DASH_HOME) is gone is found by its processes."""
    from dash_ray.deploy.localray import forget_platform, read_platform, stop_local_ray

    settings = Settings.from_env()
    started = time.monotonic()
    run = read_platform(settings.home)
    if args.drain is None and settings.ray_address is None and (run is None or run.local is not None):
        stopped = stop_local_ray(settings.home)
        forget_platform(settings.home)
    else:
        from serve_app.startup import down

        stopped = down(settings, drain_s=args.drain)
    print(_stopped(settings.home, stopped, time.monotonic() - started))
    return 0


def _stopped(home: str, stopped: Any, took: float) -> str:
    """What `down` did, naming the home it looked at when it was not the run file's."""
    from dash_ray.deploy.listener import holders

    if stopped is None:
        text = f"Dash was not running for DASH_HOME={home} (no run.json there, and no Ray instance started from it)."
        others = [h for h in holders() if h.home != home]
        if others:
            text += "\nRunning on this machine: " + ", ".join(f"DASH_HOME={h.home} ({h.url})" for h in others)
            text += "; set DASH_HOME to stop one."
        return text
    if stopped.by_processes:
        return (f"Dash stopped ({took:.1f} s): DASH_HOME={home} had no run.json; stopped the Ray instance "
                f"started from it ({stopped.processes} processes, found by its folder {stopped.temp_dir}).")
    return f"Dash stopped ({took:.1f} s)."


def cmd_status(args: argparse.Namespace) -> int:
    from dash_ray.deploy.localray import read_platform

    with client_for(args) as client:
        if args.id is not None:
            return print_pipeline(client.get(args.id), args.json)
        health = client.health()
        pipelines = client.list()
    env = ClientEnv.from_env()
    run = None if env.url else read_platform(env.home)
    return print_platform(client.url, env.home, health, pipelines, run, args.json)
