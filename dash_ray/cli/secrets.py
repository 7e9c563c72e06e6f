"""The `secrets` commands: put a named secret (its value read from stdin, a file or an
environment variable, never from the command line, where other users' `ps` and the shell's
history would see it), list the names, delete one."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from dash_ray.cli.connection import client_for
from dash_ray.cli.output import print_json, table
from dash_ray.errors import SpecError

__all__ = ["cmd_secrets_ls", "cmd_secrets_rm", "cmd_secrets_set"]


def _value(args: argparse.Namespace) -> str:
    if args.from_file:
        value = Path(args.from_file).read_text()
    elif args.from_env:
        if args.from_env not in os.environ:
            raise SpecError(f"${args.from_env} is not set", where="--from-env")
        value = os.environ[args.from_env]
    elif sys.stdin.isatty():
        value = getpass.getpass(f"value of secret {args.name}: ")
    else:
        value = sys.stdin.read()
    # One trailing newline (echo, a file saved by an editor) is not part of the value.
    return value[:-1] if value.endswith("\n") else value


def cmd_secrets_set(args: argparse.Namespace) -> int:
    value = _value(args)
    with client_for(args) as client:
        created = client.put_secret(args.name, value)
    print(f"secret {args.name} {'created' if created else 'replaced'}"
          + ("" if created else "; pipelines using it take the new value at their next restart"))
    return 0


def cmd_secrets_ls(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        secrets = client.secrets()
    if args.json:
        print_json(secrets)
    else:
        table(secrets, ["name", "created_at", "updated_at"], empty="no secrets")
    return 0


def cmd_secrets_rm(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.delete_secret(args.name)
    print(f"secret {args.name} deleted")
    return 0
