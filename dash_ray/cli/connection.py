"""How the CLI's commands (all but `up` and `down`) find the running platform and its token
(`dash_ray.client.discovery`: `$DASH_URL` or the run file `up` wrote in
`$DASH_HOME/run.json`, and `$DASH_TOKEN`, `$DASH_ADMIN_TOKEN` or `$DASH_HOME/admin.token`).
It never creates one."""

from __future__ import annotations

import argparse
from pathlib import Path

from dash_ray.client import Client
from dash_ray.client.discovery import platform_token, platform_url
from dash_ray.settings import ClientEnv

__all__ = ["CliError", "client_for"]


class CliError(RuntimeError):
    """A problem the user fixes by what the message says (exit status 1)."""


def client_for(args: argparse.Namespace) -> Client:
    env = ClientEnv.from_env()
    url = platform_url(env)
    token = platform_token(env)
    if token is None:
        raise CliError(f"no token: {Path(env.home) / 'admin.token'} does not exist; set DASH_TOKEN "
                       "(or DASH_ADMIN_TOKEN)")
    return Client(url, token=token)
