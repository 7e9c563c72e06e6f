"""What a process that starts or joins a local Ray instance sets first: loopback addresses only
(see `localray.py` for why Ray needs telling), and Ray's token authentication."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LOOPBACK_ENV", "enable_ray_auth", "use_loopback"]

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def enable_ray_auth() -> None:
    """Use Ray's token authentication in this process and the ones it starts, unless
    `RAY_AUTH_MODE` says otherwise. The token is Ray's (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH`,
    else `~/.ray/auth_token`, created when there is none). Ray 2.60 turns it on for a new
    `ray.init()` but not for a driver joining `ray start`; the mode is set here outright, as
    Ray's own switch would log an invitation to set RAY_AUTH_MODE=disabled."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    from ray._private.authentication.authentication_token_generator import generate_new_authentication_token
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]  # not in its stub

    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        _create_token(Path.home() / ".ray" / "auth_token", generate_new_authentication_token())
        loader.reset_cache()
    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # Ray caches its config: make this process see the mode too


def _create_token(path: Path, token: str) -> None:
    """Write the token file unless one exists: two `up`s at once must not each write their own
    (an instance whose processes read different tokens refuses its own workers)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.write_text(token)
    draft.chmod(0o600)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def use_loopback() -> None:
    """Make Ray in this process (and the processes it starts) keep 127.0.0.1 as the node
    address instead of replacing it with the machine's outward IP. For a driver of a local
    instance only: a driver joining a real cluster must advertise its reachable address."""
    os.environ[LOOPBACK_ENV] = "0"
    from ray._private import ray_constants  # read at import; set it in case ray is imported

    ray_constants.ENABLE_RAY_CLUSTER = False
