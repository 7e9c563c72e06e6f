"""Where a pipeline runs, for whoever calls it over Ray (the web tier, a follower's process):
its own actor `pipeline:<id>`, or the shared host actor the registry names
(`placement: shared`, `actors/host.py`), whose calls take the pipeline's id first."""

from __future__ import annotations

from typing import Any

import ray

from actors.names import REGISTRY_NAME, actor_name

__all__ = ["locate_pipeline"]

_LOCATE_TIMEOUT_S = 10.0


def locate_pipeline(pipeline_id: str, namespace: str) -> tuple[Any, tuple[str, ...]]:
    """The actor running the pipeline and the arguments its calls start with: `pipeline:<id>`
    and none, or the shared host actor the registry names and the pipeline's id. Blocking (a
    Ray look-up); ValueError when neither is there, or the registry cannot say."""
    try:
        return ray.get_actor(actor_name(pipeline_id), namespace=namespace), ()
    except ValueError:
        pass
    try:
        registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
        host: str | None = ray.get(registry.locate.remote(pipeline_id), timeout=_LOCATE_TIMEOUT_S)
    except Exception as exc:  # the registry cannot say now: not reachable
        raise ValueError(f"cannot locate pipeline {pipeline_id}: {type(exc).__name__}") from exc
    if host is None:
        raise ValueError(f"pipeline {pipeline_id} runs nowhere")
    return ray.get_actor(host, namespace=namespace), (pipeline_id,)
