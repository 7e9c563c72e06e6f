"""The names actors are registered under in the platform's Ray namespace (one place, so the
web tier, the registry and the pipelines find each other without importing each other)."""

from __future__ import annotations

__all__ = ["HOST_PREFIX", "REGISTRY_NAME", "actor_name", "host_name"]

REGISTRY_NAME = "registry"
HOST_PREFIX = "host:"  # shared host actors: host:1, host:2 ... (actors/host.py)


def actor_name(pipeline_id: str) -> str:
    """The name of a pipeline's actor."""
    return f"pipeline:{pipeline_id}"


def host_name(number: int) -> str:
    """The name of the `number`th shared host actor (`placement: shared`)."""
    return f"{HOST_PREFIX}{number}"
