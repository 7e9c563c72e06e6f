"""`dash-ray`: run the platform and manage pipelines from a shell. Thin over `client.py`; the
environment is read once, into `Settings` (`up`, `down`) or `ClientEnv` (the rest).

    dash-ray up [--demo]            start Ray, the registry and the web tier; print the URL
    dash-ray down [--drain S]       stop them; leaves no process, port or temp folder behind
    dash-ray status [ID]            the platform at a glance, or one pipeline in full
    dash-ray ls                     pipelines and their status
    dash-ray deploy FILE.yaml       create or update a pipeline; prints its ingest secret once
    dash-ray delete ID [--purge]    stop a pipeline and forget it (its data too with --purge)
    dash-ray restart ID             restart a pipeline by hand (also revives a failed one)
    dash-ray rotate-secret ID       a new ingest secret; the old one stays valid for --grace s
    dash-ray records ID             the newest mapped records
    dash-ray tail ID                follow the live records (resumes by itself after a disconnect)
    dash-ray query ID               rows or aggregates of the pipeline's silver store
    dash-ray replay ID              re-run the mapping over stored raw records (a job)
    dash-ray dead ID                the newest dead letters; `dead-replay ID` re-runs them
    dash-ray tokens create|ls|revoke  scoped API tokens

Every command but `up` and `down` talks to a running platform: the one `up` recorded in
`$DASH_HOME/run.json`, or `$DASH_URL`. It never creates a token: it uses `$DASH_TOKEN`, else
`$DASH_ADMIN_TOKEN`, else `$DASH_HOME/admin.token`, and says plainly when Dash is not running.
`--json` (ls, status, records, query, dead, replay, dead-replay, job, tokens ls) prints one JSON document instead of a
table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dash_ray.cli_data import (
    cmd_dead,
    cmd_dead_replay,
    cmd_job,
    cmd_query,
    cmd_records,
    cmd_replay,
    cmd_tail,
    cmd_tokens_create,
    cmd_tokens_ls,
    cmd_tokens_revoke,
)
from dash_ray.cli_env import client_for as _client
from dash_ray.cli_output import print_json, print_pipeline, print_platform, table
from dash_ray.client import Client
from dash_ray.errors import DashError, NotFoundError
from dash_ray.settings import ClientEnv, Settings, parse_port
from dash_ray.auth.tokens import hash_token, load_or_create_admin_token

__all__ = ["main", "start_demo"]


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    settings = Settings.from_env(**overrides)
    token = _admin_token(settings)
    return settings.with_(admin_token_hash=hash_token(token))


def _admin_token(settings: Settings) -> str:
    """For `up` only: the admin token, created in the home folder when there is none."""
    Path(settings.home).mkdir(parents=True, exist_ok=True)
    return load_or_create_admin_token(ClientEnv.from_env().admin_token, Path(settings.home) / "admin.token")


# -- the platform ------------------------------------------------------------------------------


def start_demo(client: Client) -> None:
    """`up --demo`: the demo pipeline and its dashboard, each made only when there is none
    (a dashboard the user edited stays as they left it)."""
    from dash_ray.dashboards import DEMO_DASHBOARD
    from dash_ray.sources.demo import DEMO_SPEC

    try:
        client.get("demo")
    except NotFoundError:
        client.deploy(DEMO_SPEC)
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
            start_demo(client)
        print("  demo:        pipeline 'demo' is generating readings; watch them with")
        print(f"               dash-ray records demo, or open {platform.url}/dashboards/demo")
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

    with _client(args) as client:
        if args.id is not None:
            return print_pipeline(client.get(args.id), args.json)
        health = client.health()
        pipelines = client.list()
    env = ClientEnv.from_env()
    run = None if env.url else read_platform(env.home)
    return print_platform(client.url, env.home, health, pipelines, run, args.json)


def cmd_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        pipelines = client.list()
    rows = [{"id": p.id, "status": p.status, "restarts": p.restarts, "last_seq": p.counters.get("last_seq", 0),
             "waiting": p.waiting_in_log, "last_error": p.last_error} for p in pipelines]
    if args.json:
        print_json(rows)
    else:
        table(rows, empty="no pipelines; create one with `dash-ray deploy FILE.yaml`")
    return 0


# -- pipelines ---------------------------------------------------------------------------------


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


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete(args.id, purge=args.purge)
    print(f"pipeline {args.id} deleted" + (", its stored data too" if args.purge else "; its stored data stays"))
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    with _client(args) as client:
        pipeline = client.restart(args.id)
    print(f"pipeline {pipeline.id}: {pipeline.status}")
    return 0


def cmd_rotate_secret(args: argparse.Namespace) -> int:
    with _client(args) as client:
        secret = client.rotate_secret(args.id, grace_s=args.grace)
    print(f"new ingest secret (shown once, keep it): {secret}")
    if args.grace:
        print(f"the secret it replaces stays valid for {args.grace} s; secrets retired earlier keep their own grace")
    else:
        print("every earlier secret stopped working now")
    return 0


_ID = "the pipeline's id"


def _whole(least: int) -> Any:
    """An argparse type: a whole number of at least `least`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {least}, not {text!r}")
        return value
    return parse


def _port(text: str) -> int:
    try:
        return parse_port(text, "--port")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    from dash_ray import __version__

    parser = argparse.ArgumentParser(prog="dash-ray", description="Real-time data pipelines on Ray.")
    parser.add_argument("--version", action="version", version=f"dash-ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Any, help: str, *, json_output: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        if json_output:
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return p

    up = command("up", cmd_up, "start the platform (local Ray unless DASH_RAY_ADDRESS is set)")
    up.add_argument("--demo", action="store_true", help="also deploy a demo pipeline fed by a generator")
    up.add_argument("--port", type=_port, help="HTTP port (default $DASH_PORT or 8000; 0: a free one, printed)")
    command("down", cmd_down, "stop the platform").add_argument(
        "--drain", type=float, metavar="S", help="let pipelines flush to the lake for up to S seconds first")
    command("status", cmd_status, "the platform's summary, or one pipeline in full",
            json_output=True).add_argument("id", nargs="?", help="a pipeline's id (default: the whole platform)")
    command("ls", cmd_ls, "list pipelines: status, restarts (those the supervisor made after a crash, since "
            "the pipeline was created; a restart by hand is not counted), last seq, records waiting in the "
            "log, last error", json_output=True)
    command("deploy", cmd_deploy, "create or update a pipeline, or a dashboard (a file with `kind: dashboard` "
            "or `widgets`), from a YAML/JSON file").add_argument("file", help="the spec's YAML or JSON file")
    delete = command("delete", cmd_delete, "stop a pipeline and forget it")
    delete.add_argument("id", help=_ID)
    delete.add_argument("--purge", action="store_true", help="also delete its lake data, PostgreSQL silver and log")
    command("restart", cmd_restart, "restart a pipeline by hand (also revives a failed one)").add_argument(
        "id", help=_ID)
    rotate = command("rotate-secret", cmd_rotate_secret,
                     "a new ingest secret for a pipeline; the one it replaces stays valid for --grace s, "
                     "secrets retired earlier keep their own grace (at most 3 retired secrets are kept)")
    rotate.add_argument("id", help=_ID)
    rotate.add_argument("--grace", type=_whole(0), default=86_400, metavar="S",
                        help="seconds the replaced secret stays valid (86400); 0 revokes every earlier secret now")
    records = command("records", cmd_records, "a pipeline's newest mapped records, from memory", json_output=True)
    records.add_argument("id", help=_ID)
    records.add_argument("--limit", type=_whole(1), default=20, metavar="N", help="at most N records (20)")
    tail = command("tail", cmd_tail, "follow a pipeline's live records (Ctrl-C to stop)", json_output=True)
    tail.add_argument("id", help=_ID)
    tail.add_argument("--after", type=_whole(0), metavar="SEQ",
                      help="first every record after this seq, then the live tail")
    tail.add_argument("--last", type=_whole(0), default=10, metavar="N",
                      help="start with the newest N records (10); 0 for the live tail only")
    query = command("query", cmd_query, "rows or aggregates of a pipeline's silver store (what the lake or "
                    "PostgreSQL holds once a flush stored it)", json_output=True)
    query.add_argument("id", help=_ID)
    query.add_argument("--from", dest="start", metavar="T",
                       help="event time from (ISO 8601 or epoch seconds), inclusive")
    query.add_argument("--to", dest="end", metavar="T", help="event time to, exclusive")
    query.add_argument("--fields", metavar="A,B", help="raw rows: the fields to show besides seq and time (default all)")
    query.add_argument("--bucket", help="aggregate per time bucket: 10s, 1m, 1h, 1d")
    query.add_argument("--agg", metavar="FN:FIELD,...",
                       help="aggregates: fn:field,... with fn in avg min max sum count first last (count alone counts rows)")
    query.add_argument("--by", metavar="A,B", help="group aggregates by these fields")
    query.add_argument("--limit", type=_whole(1), metavar="N", help="raw rows: at most N (default 1000)")
    query.add_argument("--order", choices=["asc", "desc"], help="raw rows: by time then seq (asc)")
    replay = command("replay", cmd_replay, "re-run the current mapping over stored raw records (all of them "
                     "unless a range is given; the stored files holding them are rewritten whole)", json_output=True)
    replay.add_argument("id", help=_ID)
    replay.add_argument("--from", dest="start", metavar="T",
                        help="event time from (ISO 8601 or epoch seconds), inclusive, as in query")
    replay.add_argument("--to", dest="end", metavar="T", help="event time to, exclusive")
    replay.add_argument("--received-from", dest="received_start", metavar="T", help="receive time from, inclusive")
    replay.add_argument("--received-to", dest="received_end", metavar="T", help="receive time to, exclusive")
    replay.add_argument("--from-seq", type=_whole(1), metavar="N", help="first sequence number")
    replay.add_argument("--to-seq", type=_whole(1), metavar="M", help="last sequence number (included)")
    replay.add_argument("--wait", action="store_true", help="wait until the job is done")
    dead = command("dead", cmd_dead, "a pipeline's newest dead letters, with their reasons", json_output=True)
    dead.add_argument("id", help=_ID)
    dead.add_argument("--limit", type=_whole(1), default=20, metavar="N", help="at most N dead letters (20)")
    dead_replay = command("dead-replay", cmd_dead_replay, "re-run dead letters through the current mapping",
                          json_output=True)
    dead_replay.add_argument("id", help=_ID)
    dead_replay.add_argument("--wait", action="store_true", help="wait until the job is done")
    job = command("job", cmd_job, "a replay job's state: what was asked, what was rewritten", json_output=True)
    job.add_argument("id", help="the job's id (<pipeline>.<n>), as replay printed it")
    job.add_argument("--wait", action="store_true", help="wait until the job is done")

    tokens = sub.add_parser("tokens", help="scoped API tokens", description="scoped API tokens: create, list, revoke")
    actions = tokens.add_subparsers(dest="tokens", required=True)
    create = actions.add_parser("create", help="make a token (shown once)", description="make a token (shown once)")
    create.add_argument("--scope", required=True, choices=["read", "write", "admin"],
                        help="read: see pipelines, data and dashboards; admin: change them too; write: as read today "
                             "(no route needs more yet)")
    create.add_argument("--name", help="a name to tell it by in `tokens ls` (default: its scope)")
    create.set_defaults(run=cmd_tokens_create)
    listing = actions.add_parser("ls", help="live tokens (never their values)",
                                 description="live tokens (never their values)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=cmd_tokens_ls)
    revoke = actions.add_parser("revoke", help="revoke a token for good", description="revoke a token for good")
    revoke.add_argument("id", help="the token's id, as `tokens ls` shows it")
    revoke.set_defaults(run=cmd_tokens_revoke)
    return parser


def _report(exc: DashError) -> None:
    problems = getattr(exc, "problems", ())
    if problems and exc.message.startswith("invalid "):
        # The message repeats them on one line; show each once, on its own line.
        what = exc.message.split(":", 1)[0]
        print(f"error: {what} ({len(problems)} problem{'s' if len(problems) > 1 else ''}):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except DashError as exc:
        _report(exc)
        return 1
    except OSError as exc:
        # A file the command reads: "cannot read x.yaml: No such file or directory".
        what = f"cannot read {exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        print(f"error: {what}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
