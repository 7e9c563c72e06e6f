"""`ProxiedWeb` (`DASH_INGRESS=serve`) builds its app in the replica through Serve's late-bound
ingress hook, `__serve_build_asgi_app__`, whose name is Serve's own (`ray/serve/_private`).
Pinned here to the Ray version it was checked on, and driven as a replica drives it: the
wrapper's constructor, then the hook, then the app set on the wrapper (Ray 2.60's
`UserCallableWrapper`, replica.py). tests/test_cli.py serves the API through it end to end."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import ray
from ray.serve._private.http_util import ASGIAppReplicaWrapper
from ray.serve._private.replica import SERVE_BUILD_ASGI_APP_METHOD

from dash_ray.settings import Settings
from serve_app.deployment import ProxiedWeb
from serve_app.ingress import IngestFront

# Checked on: when Ray moves, read `serve.ingress` (ray/serve/api.py) and the replica's use of
# SERVE_BUILD_ASGI_APP_METHOD (ray/serve/_private/replica.py) again, then add the version.
CHECKED_ON = ("2.60.0",)


def test_the_late_bound_ingress_hook_is_the_one_ray_checked_on_calls() -> None:
    assert ray.__version__ in CHECKED_ON, (
        f"ProxiedWeb relies on serve.ingress()'s late-bound hook, checked on Ray {', '.join(CHECKED_ON)}; "
        f"this is Ray {ray.__version__}: check the hook and add the version to CHECKED_ON")
    assert SERVE_BUILD_ASGI_APP_METHOD == "__serve_build_asgi_app__"
    assert issubclass(ProxiedWeb, ASGIAppReplicaWrapper)
    assert SERVE_BUILD_ASGI_APP_METHOD in vars(ProxiedWeb.__mro__[1])  # ours, under Serve's wrapper


async def test_the_replica_builds_the_app_through_the_hook(tmp_path: Path) -> None:
    settings = Settings.from_env(env={}, home=str(tmp_path)).web()
    handlers = list(logging.getLogger().handlers)
    wrapper = ProxiedWeb.__new__(ProxiedWeb)
    try:
        await wrapper.__init__(settings)  # type: ignore[misc]  # Serve's wrapper: an async __init__
        assert not hasattr(wrapper, "_asgi_app")  # late-bound: no app until the hook runs
        app = getattr(wrapper, SERVE_BUILD_ASGI_APP_METHOD)()
        wrapper._set_asgi_app(app)
        assert isinstance(wrapper.app, IngestFront)
    finally:
        gc.unfreeze()  # the replica freezes what it holds; this process goes on
        for handler in set(logging.getLogger().handlers) - set(handlers):
            logging.getLogger().removeHandler(handler)
