"""Shared fixtures: the real services tests run against (PostgreSQL, an S3 server on loopback,
the platform on a local Ray) and helpers to run `dash-ray` as a user does.

A missing service fails the test run; nothing here skips."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.waiting import wait_for

PG_ADMIN_DSN = os.environ.get("DASH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    """An unused TCP port on loopback (the OS picks it; another process may still race us)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"dash_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_DSN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict]:
    """A moto S3 server on loopback; yields fsspec/s3fs storage options pointing at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        yield {
            "endpoint_url": endpoint,
            "storage_options": {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            },
        }
    finally:
        server.stop()


@pytest.fixture()
def s3_bucket(s3_server: dict) -> str:
    """A new empty bucket on the S3 server; returns its name."""
    import boto3

    name = f"dash-{uuid.uuid4().hex[:10]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    return name


# -- the platform on a real local Ray --------------------------------------------------------


ADMIN_TOKEN = "dash_admin_test-token-for-the-suite"


def _dash_env(home: Path, port: int, env_extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_")}
    env.update({"DASH_HOME": str(home), "DASH_PORT": str(port), **env_extra})
    return env


def dash(home: Path, port: int, *args: str, timeout: float = 180,
         **env_extra: str) -> subprocess.CompletedProcess[str]:
    """`dash-ray ARGS` as a user runs it from the folder above `home`; its output."""
    command = [str(Path(sys.executable).with_name("dash-ray")), *args]
    return subprocess.run(command, env=_dash_env(home, port, env_extra), cwd=home.parent, capture_output=True,
                          text=True, timeout=timeout)


def dash_popen(home: Path, port: int, *args: str, **env_extra: str) -> subprocess.Popen[str]:
    """`dash-ray ARGS` started, not waited for (`communicate()` for its output)."""
    home.parent.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).with_name("dash-ray")), *args]
    return subprocess.Popen(command, env=_dash_env(home, port, env_extra), cwd=home.parent, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_using(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker in cmdline and state != "Z":
                found.append(f"{entry.name}: {cmdline[:120]}")
    return found


@dataclasses.dataclass
class Running:
    """A platform started for the tests: its settings, URL, admin token and an SDK client."""

    settings: Any
    url: str
    token: str
    client: Any

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_for(self, check: Any, *, timeout: float = 60.0, every: float = 0.2, what: str = "condition") -> Any:
        """`tests.waiting.wait_for`, kept here for the tests that hold a platform."""
        return wait_for(check, timeout=timeout, every=every, what=what)


def platform_settings(home: Path, **changes: Any) -> Any:
    from dash_ray.auth.tokens import hash_token
    from dash_ray.settings import RestartPolicy, Settings

    values: dict[str, Any] = {
        "home": str(home), "port": free_port(), "admin_token_hash": hash_token(ADMIN_TOKEN),
        "restart": RestartPolicy(max_restarts=3, window_s=60, backoff_s=0.2, max_backoff_s=1.0),
        "health_interval_s": 0.5,
    }
    values.update(changes)
    return Settings.from_env(env={}, **values)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Dash on a local Ray instance of its own (registry, Serve web tier), for the session.
    Its teardown stops the processes `up` started, whatever became of the home folder."""
    from dash_ray.client import Client
    from dash_ray.deploy.localray import stop_instance
    from serve_app.startup import down, up

    # Port 0: `up` takes a free one itself, so no other process can take it between a check
    # and the bind (another copy of the suite, say).
    settings = platform_settings(tmp_path_factory.mktemp("platform") / "home", port=0)
    started = up(settings)
    settings = settings.with_(port=int(started.url.rsplit(":", 1)[1]))
    client = Client(started.url, token=ADMIN_TOKEN)
    try:
        yield Running(settings, started.url, ADMIN_TOKEN, client)
    finally:
        client.close()
        try:
            down(settings)
        finally:
            if started.local is not None:
                stop_instance(started.local)
