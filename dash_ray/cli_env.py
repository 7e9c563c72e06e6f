"""How the CLI's commands (all but `up` and `down`) find the running platform and its token:
the run file `up` wrote in `$DASH_HOME/run.json`, or `$DASH_URL`; the token from `$DASH_TOKEN`,
else `$DASH_ADMIN_TOKEN`, else `$DASH_HOME/admin.token`. It never creates one."""

from __future__ import annotations

import argparse
from pathlib import Path

from dash_ray.client import Client
from dash_ray.settings import ClientEnv

__all__ = ["CliError", "client_for"]


class CliError(RuntimeError):
    """A problem the user fixes by what the message says (exit status 1)."""


def _url(env: ClientEnv) -> str:
    """The running platform's URL: `DASH_URL`, else the run file `up` wrote."""
    from dash_ray.deploy.localray import read_platform

    if env.url:
        return env.url
    run = read_platform(env.home)
    start = "start it with `dash-ray up`, or set DASH_HOME to the folder it was started with (or DASH_URL)"
    if run is None:
        raise CliError(f"Dash is not running for DASH_HOME={env.home} (no run.json there); {start}")
    if not run.alive():
        raise CliError(f"Dash is not running for DASH_HOME={env.home}: its Ray instance (pid {run.local.pid}) "
                       f"has exited; run `dash-ray down` to clean up, then `dash-ray up`")
    if not run.url:
        raise CliError(f"Dash is still starting (or failed to start) for DASH_HOME={env.home}; see "
                       f"{Path(env.home) / 'logs'}")
    return run.url


def _token(env: ClientEnv) -> str:
    token = env.token or env.admin_token
    if token:
        return token
    path = Path(env.home) / "admin.token"
    try:
        return path.read_text()
    except FileNotFoundError:
        raise CliError(f"no token: {path} does not exist; set DASH_TOKEN (or DASH_ADMIN_TOKEN)") from None


def client_for(args: argparse.Namespace) -> Client:
    env = ClientEnv.from_env()
    url = _url(env)
    return Client(url, token=_token(env))
