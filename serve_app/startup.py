"""Bring the whole platform up on Ray and take it down: the registry actor, the Serve web
tier, and (for a laptop) the local Ray instance itself. `dash-ray up`/`down` call these.

What listens where (a local instance): the web tier on `settings.host:settings.port`
(127.0.0.1:8000 unless DASH_HOST/DASH_PORT say otherwise; port 0 takes a free one), held by
this platform alone from the moment `up` checks it (`dash_ray/deploy/listener.py`); Ray's GCS,
raylet, object manager, workers and agents on 127.0.0.1 only, on ports the OS picks (see
`dash_ray/deploy/localray.py`). `up` records the URL and Ray address in `$DASH_HOME/run.json`;
`down` removes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import ray
from ray import serve

from actors.names import REGISTRY_NAME
from actors.registry import get_or_create_registry
from dash_ray.deploy.driver import enable_ray_auth, use_loopback
from dash_ray.deploy.listener import listen_exclusively
from dash_ray.deploy.localray import (
    LocalRay,
    Stopped,
    ensure_not_running,
    find_instance,
    forget_platform,
    read_platform,
    record_platform,
    start_local_ray,
    stop_local_ray,
)
from dash_ray.errors import UnavailableError
from dash_ray.settings import Settings
from serve_app.actor_client import unwrap
from serve_app.deployment import APP_NAME, serve_options, web_app

__all__ = ["Platform", "connect_ray", "down", "up"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Platform:
    url: str
    ray_address: str
    local: LocalRay | None


def connect_ray(address: str, namespace: str, *, loopback: bool = False) -> None:
    """Join the Ray instance at `address` as a driver; `loopback` for a local instance (the
    driver then dials and advertises 127.0.0.1, as the instance does)."""
    if ray.is_initialized():
        return
    if loopback:
        use_loopback()
    enable_ray_auth()
    # Serve's notes on its own steps ("Connecting to existing Serve app ...") are not for a
    # user of `up` and `down`; its warnings still show.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    # A node just started may not answer in time on a loaded machine ("Failed to connect to
    # Ray cluster at ..." though it is up a moment later): a few attempts, then the error.
    for attempt in range(4):
        try:
            ray.init(address=address, namespace=namespace, logging_level=logging.WARNING, log_to_driver=False)
            return
        except ConnectionError:
            if attempt == 3:
                raise
            ray.shutdown()
            time.sleep(1.0 + attempt)


def up(settings: Settings, *, timeout_s: float = 120.0) -> Platform:
    """Start (or join, with `settings.ray_address`) Ray, then the registry and the web tier;
    returns once `GET /healthz` answers. The driver stays connected; `ray.shutdown()` when
    done (the platform keeps running).

    A local instance takes its port first, before Ray starts, and holds it until it stops (a
    port another platform holds fails here at once, naming its DASH_HOME); port 0 takes a free
    one, which `Platform.url` says."""
    local = None
    address = settings.ray_address
    held = None
    if address is None:
        ensure_not_running(settings.home)
        held = listen_exclusively(settings.host, settings.port)
        settings = settings.with_(port=held.getsockname()[1])
    url = f"http://{settings.host}:{settings.port}"
    try:
        if held is not None:
            if settings.ingress == "replica":
                local = start_local_ray(settings.home, port_socket=held, url=url)
                held.close()  # the instance's holder has it now
                settings = settings.with_(listener=local.listener)
            else:
                local = start_local_ray(settings.home)
            address = local.address
        assert address is not None  # given (settings.ray_address), or the instance just started
        connect_ray(address, settings.namespace, loopback=local is not None)
        _wait_registry(get_or_create_registry(settings), timeout_s)
        if held is not None and settings.ingress != "replica":
            # Serve's own proxy binds the port itself, without SO_REUSEPORT (localray.py):
            # released only now, a moment before it does.
            held.close()
        serve.start(**serve_options(settings))
        route_prefix = None if settings.ingress == "replica" else "/"
        serve.run(web_app(settings), name=APP_NAME, route_prefix=route_prefix, blocking=False)
        _wait_healthy(url, timeout_s)
        record_platform(settings.home, url=url, ray_address=address)
    except BaseException:
        if held is not None:
            held.close()
        if local is not None:
            if ray.is_initialized():
                ray.shutdown()
            stop_local_ray(settings.home)
        raise
    return Platform(url=url, ray_address=address, local=local)


def _wait_registry(registry: Any, timeout_s: float) -> None:
    """Until the registry has booted; raises the OperatorError that stops it at once (a wrong
    key), else RuntimeError with its last reason after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            ray.get(registry.ready.remote(min(5.0, max(left, 0.0))), timeout=max(left, 0.0) + 10)
            return
        except Exception as exc:  # noqa: BLE001 - the registry's own error, or Ray's
            error = unwrap(exc)
            if not isinstance(error, UnavailableError):
                raise error from None  # an OperatorError (a wrong key) or a bug: waiting will not help
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the registry did not become ready within {timeout_s:.0f} s: "
                                   f"{error.message}") from None


def _wait_healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/healthz", timeout=5)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.25)
    raise RuntimeError(f"Dash did not become healthy at {url} within {timeout_s:.0f} s: {last}")


def down(settings: Settings, *, drain_s: float | None = None) -> Stopped | None:
    """Stop pipelines gracefully (each flushes what it can within `drain_s`, 3 s for a local
    instance and 60 s on a cluster, whose detached actors outlive this call; what it cannot
    stays in its write-ahead log, which made it durable before its 202, and is replayed on the
    next start), then the web tier and the registry, then the local Ray instance if `up`
    started one (found by its processes when its run file is gone). None when nothing was
    running.

    For a local instance the registry's drain is the only step asked of Ray: the web replicas,
    the Serve controller and every actor end with the instance's processes, so `serve.shutdown`
    (which waits out each replica's graceful shutdown) is skipped."""
    run = read_platform(settings.home)
    local = run.local if run is not None else None
    if run is None and settings.ray_address is None:
        local = find_instance(settings.home)
    address = settings.ray_address or (run.ray_address if run is not None and local is None else None)
    if local is not None and local.alive():
        address = local.address or None
    if drain_s is None:
        drain_s = 3.0 if local is not None else 60.0
    stopped = None
    if address is not None:
        try:
            connect_ray(address, settings.namespace, loopback=local is not None)
            try:
                registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
            except ValueError:
                registry = None
            if registry is not None:
                try:
                    ray.get(registry.shutdown.remote(), timeout=drain_s)
                except Exception as exc:  # noqa: BLE001 - still tear down the rest; the logs keep what is acked
                    log.warning("registry shutdown did not finish within %.1f s: %s", drain_s, exc)
                if local is None:
                    ray.kill(registry, no_restart=True)
            if local is None:
                serve.shutdown()
            stopped = Stopped()
        except Exception as exc:  # noqa: BLE001 - a dead instance is stopped by its pid below
            log.warning("could not stop Dash cleanly: %s", exc)
        finally:
            if ray.is_initialized():
                ray.shutdown()
    if local is not None:
        stopped = stop_local_ray(settings.home) or stopped
    forget_platform(settings.home)
    return stopped
