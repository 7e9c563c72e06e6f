"""Dash on a real multi-node Ray cluster on this machine (`nodes.py`): a head and a second
web node, two ingestor nodes, the platform joined to it with `dash-ray up --address`, its
write-ahead logs in NATS JetStream (127.0.0.1:4222), its state folder and lake in one shared
folder (standing in for NFS and S3). Every node, actor and process ends with the module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dash_ray.client import Client
from dash_ray.log.choice import drop_log, log_name
from tests.cluster.nodes import Nodes
from tests.conftest import ADMIN_TOKEN, dash, free_port

NATS = "nats://127.0.0.1:4222"


@dataclass
class OnCluster:
    nodes: Nodes
    home: Path
    shared: Path
    port: int
    url: str
    env: dict[str, str]
    made: list[str]  # pipeline ids, whose logs are dropped at the end

    def client(self) -> Client:
        return Client(self.url, token=ADMIN_TOKEN)

    def cli(self, *args: str) -> str:
        """`dash-ray ARGS` from another machine's point of view: DASH_URL and DASH_TOKEN only."""
        done = dash(self.home.parent / "elsewhere", self.port, *args, DASH_URL=self.url, DASH_TOKEN=ADMIN_TOKEN)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def pipeline_id(self, prefix: str) -> str:
        self.made.append(pipeline_id := f"{prefix}-{uuid.uuid4().hex[:6]}")
        return pipeline_id


def _ray_env(nodes: Nodes) -> dict[str, str]:
    return {k: nodes.env[k] for k in ("RAY_TMPDIR", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}


@pytest.fixture(scope="module")
def on_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnCluster]:
    root = tmp_path_factory.mktemp("cluster")
    nodes = Nodes(head_role="web")
    made: list[str] = []
    try:
        nodes.add("web2", "web")
        nodes.add("ing1", "ingestor")
        nodes.add("ing2", "ingestor")
        port = free_port()
        env = {**_ray_env(nodes), "DASH_ADMIN_TOKEN": ADMIN_TOKEN, "DASH_WEB_REPLICAS": "2", "DASH_LOG": "jetstream",
               "DASH_NATS_URL": NATS, "DASH_STATE_DIR": str(root / "shared" / "state"),
               "DASH_LAKE_URL": str(root / "shared" / "lake"), "DASH_RESTART_BACKOFF_S": "0.2"}
        home = root / "head" / ".dash"
        home.parent.mkdir()
        (root / "elsewhere").mkdir()
        started = dash(home, port, "up", "--address", nodes.address, timeout=300, **env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"Dash is up at http://127.0.0.1:{port}" in started.stdout
        yield OnCluster(nodes, home, root / "shared", port, f"http://127.0.0.1:{port}", env, made)
        down = dash(home, port, "down", "--drain", "20", timeout=120, **env, DASH_RAY_ADDRESS=nodes.address)
        assert down.returncode == 0, down.stderr
    finally:
        nodes.close()
        for pipeline_id in made:
            drop_log("jetstream", folder=root / "none", name=log_name("dash", pipeline_id), nats_url=NATS)
