"""The `dash-ray` command line: its parser (every command and argument), and `main`, which
runs the command and turns an error into a message and exit status 1."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dash_ray.cli.data import cmd_dead, cmd_dead_replay, cmd_job, cmd_query, cmd_records, cmd_replay, cmd_tail
from dash_ray.cli.pipelines import cmd_delete, cmd_deploy, cmd_ls, cmd_restart, cmd_rotate_secret
from dash_ray.cli.platform import cmd_down, cmd_status, cmd_up
from dash_ray.cli.secrets import cmd_secrets_ls, cmd_secrets_rm, cmd_secrets_set
from dash_ray.cli.sinks import cmd_sinks
from dash_ray.cli.tokens import cmd_tokens_create, cmd_tokens_ls, cmd_tokens_revoke
from dash_ray.errors import DashError
from dash_ray.settings import parse_port

__all__ = ["build_parser", "main"]

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


def build_parser() -> argparse.ArgumentParser:
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
    up.add_argument("--address", metavar="HOST:PORT",
                    help="join the running Ray cluster there (its GCS) instead of starting one "
                         "(default $DASH_RAY_ADDRESS)")
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
    query.add_argument("--fields", metavar="A,B",
                       help="raw rows: the fields to show besides seq and time (default all)")
    query.add_argument("--bucket", help="aggregate per time bucket: 10s, 1m, 1h, 1d")
    query.add_argument("--agg", metavar="FN:FIELD,...",
                       help="aggregates: fn:field,... with fn in avg min max sum count first last "
                            "(count alone counts rows)")
    query.add_argument("--by", metavar="A,B", help="group aggregates by these fields")
    query.add_argument("--filter", metavar="FIELD:V1,V2",
                       help="only rows whose field equals one of the values (string or int fields; "
                            "several fields separated by ;)")
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
    sinks = command("sinks", cmd_sinks, "a pipeline's sinks: state, breaker, deliveries, last error",
                    json_output=True)
    sinks.add_argument("id", help=_ID)
    sinks.add_argument("--dead", action="store_true", help="list the dead deliveries, with their reasons")
    sinks.add_argument("--redeliver", metavar="NAME", help="queue this sink's dead deliveries again (same ids)")
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

    secrets = sub.add_parser("secrets", help="named secrets for sources and sinks",
                             description="named secrets for sources and sinks (API keys, passwords, URLs), "
                                         "referenced from specs as {secret: NAME}; never shown again")
    verbs = secrets.add_subparsers(dest="secrets", required=True)
    put = verbs.add_parser("set", help="create or replace a secret; the value from stdin (or a prompt)",
                           description="create or replace a secret; the value is read from stdin (a prompt on a "
                                       "terminal), --from-file or --from-env, never from the command line")
    put.add_argument("name", help="the secret's name, as specs refer to it: {secret: NAME}")
    source = put.add_mutually_exclusive_group()
    source.add_argument("--from-file", metavar="PATH",
                        help="read the value from this file (one trailing newline dropped)")
    source.add_argument("--from-env", metavar="VAR", help="read the value from this environment variable")
    put.set_defaults(run=cmd_secrets_set)
    names = verbs.add_parser("ls", help="the secrets' names (never their values)",
                             description="the secrets' names and times (never their values)")
    names.add_argument("--json", action="store_true", help="print JSON instead of a table")
    names.set_defaults(run=cmd_secrets_ls)
    remove = verbs.add_parser("rm", help="delete a secret no pipeline uses",
                              description="delete a secret; refused while a pipeline's spec refers to it")
    remove.add_argument("name", help="the secret's name")
    remove.set_defaults(run=cmd_secrets_rm)
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
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
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

