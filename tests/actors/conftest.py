"""What the actor tests run on: the session's local Ray (the `platform` fixture's instance, so
the suite keeps one Ray), with every actor made here in a namespace of its own, so the
platform's registry never sees them, and killed at the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from dash_ray.settings import Settings
from tests.conftest import Running, platform_settings


class Made:
    """The actors a test module made, by name, in its own namespace; killed at the end."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.names: set[str] = set()

    def settings(self, home: Path, **changes: object) -> Settings:
        return platform_settings(home, namespace=self.namespace, **changes)

    def kill_all(self) -> None:
        for name in sorted(self.names):
            try:
                actor = ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                continue
            ray.kill(actor, no_restart=True)


@pytest.fixture(scope="module")
def made(platform: Running) -> Iterator[Made]:
    assert ray.is_initialized(), "the platform fixture connects this process to its Ray"
    actors = Made(f"actors-{uuid.uuid4().hex[:8]}")
    try:
        yield actors
    finally:
        actors.kill_all()
