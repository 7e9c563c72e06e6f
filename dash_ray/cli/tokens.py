"""The `tokens` commands: create a scoped API token (shown once), list the live ones, revoke one."""

from __future__ import annotations

import argparse

from dash_ray.cli.connection import client_for
from dash_ray.cli.output import print_json, table

__all__ = ["cmd_tokens_create", "cmd_tokens_ls", "cmd_tokens_revoke"]


def cmd_tokens_create(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        token = client.create_token(args.scope, name=args.name)
    print(f"token {token['id']} ({token['scope']}, {token['name']}); shown once, keep it:")
    print(token["token"])
    return 0


def cmd_tokens_ls(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        tokens = client.tokens()
    if args.json:
        print_json(tokens)
    else:
        table(tokens, ["id", "name", "scope", "created_at"], empty="no tokens (the admin token is not listed)")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.revoke_token(args.id)
    print(f"token {args.id} revoked")
    return 0
