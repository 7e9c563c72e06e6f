"""Finding the running platform and the token to use, for the CLI and `dash_ray.connect()`:
the URL is `$DASH_URL`, else the one `dash-ray up` recorded in `$DASH_HOME/run.json`; the token
is `$DASH_TOKEN`, else `$DASH_ADMIN_TOKEN`, else the file `$DASH_HOME/admin.token`. Nothing here
creates a token or a folder."""

from __future__ import annotations

from pathlib import Path

from dash_ray.client.api import Client
from dash_ray.errors import UnavailableError
from dash_ray.settings import ClientEnv

__all__ = ["connect", "platform_token", "platform_url"]


def platform_url(env: ClientEnv) -> str:
    """The running platform's URL; UnavailableError saying what to do when none is found."""
    from dash_ray.deploy.localray import read_platform

    if env.url:
        return env.url
    run = read_platform(env.home)
    start = "start it with `dash-ray up`, or set DASH_HOME to the folder it was started with (or DASH_URL)"
    if run is None:
        raise UnavailableError(f"Dash is not running for DASH_HOME={env.home} (no run.json there); {start}")
    if not run.alive():
        pid = run.local.pid if run.local is not None else "?"
        raise UnavailableError(f"Dash is not running for DASH_HOME={env.home}: its Ray instance (pid {pid}) "
                               f"has exited; run `dash-ray down` to clean up, then `dash-ray up`")
    if not run.url:
        raise UnavailableError(f"Dash is still starting (or failed to start) for DASH_HOME={env.home}; see "
                               f"{Path(env.home) / 'logs'}")
    return run.url


def platform_token(env: ClientEnv) -> str | None:
    """The token to send, or None when the environment names none and the home has no
    `admin.token`."""
    token = env.token or env.admin_token
    if token:
        return token
    try:
        return (Path(env.home) / "admin.token").read_text()
    except FileNotFoundError:
        return None


def connect(url: str | None = None, token: str | None = None, *, timeout: float | None = None,
            retries: int | None = None) -> Client:
    """A Client for the Dash API at `url`, authenticated with `token` (whitespace around it,
    like the newline of a token file read whole, is dropped).

    Without `url`, the platform the CLI would talk to: `$DASH_URL`, else the one `dash-ray up`
    recorded in `$DASH_HOME/run.json` (`$DASH_HOME` defaults to `./.dash`); UnavailableError
    when neither names a running platform. Without `token`: `$DASH_TOKEN`, else
    `$DASH_ADMIN_TOKEN`, else `$DASH_HOME/admin.token` when it exists, else none."""
    env = ClientEnv.from_env()
    if url is None:
        url = platform_url(env)
    if token is None:
        token = platform_token(env)
    return Client(url, token=token, timeout=timeout, retries=retries)
