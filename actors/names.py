"""The names actors are registered under in the platform's Ray namespace (one place, so the
web tier, the registry and the pipelines find each other without importing each other)."""

from __future__ import annotations

__all__ = ["REGISTRY_NAME", "actor_name"]

REGISTRY_NAME = "registry"


def actor_name(pipeline_id: str) -> str:
    """The name of a pipeline's actor."""
    return f"pipeline:{pipeline_id}"
