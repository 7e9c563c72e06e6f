"""Dash joined to a multi-node Ray cluster of `nodes.py` with `dash-ray up --address`, as a
user does on a cluster: its write-ahead logs in NATS JetStream (127.0.0.1:4222), its state
folder and lake in one shared folder (standing in for NFS and S3). For the cluster tests and
`benchmarks/cluster.py`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dash_ray.client import Client
from dash_ray.log.choice import drop_log, log_name
from tests.cluster.nodes import Nodes
from tests.conftest import ADMIN_TOKEN, dash, free_port

NATS = "nats://127.0.0.1:4222"


@dataclass
class OnCluster:
    nodes: Nodes
    root: Path
    port: int
    env: dict[str, str]
    made: list[str] = field(default_factory=list)  # pipeline ids, whose logs `stop` drops

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return self.root / "head" / ".dash"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    def client(self) -> Client:
        return Client(self.url, token=ADMIN_TOKEN)

    def cli(self, *args: str) -> str:
        """`dash-ray ARGS` from another machine's point of view: DASH_URL and DASH_TOKEN only."""
        done = dash(self.root / "elsewhere" / ".dash", self.port, *args, DASH_URL=self.url, DASH_TOKEN=ADMIN_TOKEN)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def pipeline_id(self, prefix: str) -> str:
        self.made.append(pipeline_id := f"{prefix}-{uuid.uuid4().hex[:6]}")
        return pipeline_id

    def stop(self) -> None:
        """`dash-ray down` (pipelines drain), then every node; drop the logs made in NATS."""
        try:
            dash(self.home, self.port, "down", "--drain", "20", timeout=120, **self.env,
                 DASH_RAY_ADDRESS=self.nodes.address)
        finally:
            self.nodes.close()
            for pipeline_id in self.made:
                name = log_name(self.env["DASH_LOG_NAMESPACE"], pipeline_id)
                drop_log("jetstream", folder=self.root / "none", name=name, nats_url=NATS)


def start_platform(nodes: Nodes, root: Path, *, web_replicas: int) -> OnCluster:
    """`dash-ray up --address` on the cluster of `nodes`, from `root/head`; returns once it
    answers. Raises AssertionError with its output when it fails."""
    (root / "head").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    env = {**{k: nodes.env[k] for k in ("RAY_TMPDIR", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")},
           "DASH_ADMIN_TOKEN": ADMIN_TOKEN, "DASH_WEB_REPLICAS": str(web_replicas), "DASH_LOG": "jetstream",
           "DASH_NATS_URL": NATS, "DASH_STATE_DIR": str(root / "shared" / "state"),
           "DASH_LAKE_URL": str(root / "shared" / "lake"), "DASH_RESTART_BACKOFF_S": "0.2",
           "DASH_LOG_NAMESPACE": f"t{uuid.uuid4().hex[:10]}"}  # its own logs in the shared NATS
    on = OnCluster(nodes, root, free_port(), env)
    started = dash(on.home, on.port, "up", "--address", nodes.address, timeout=300, **env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"Dash is up at {on.url}" in started.stdout
    return on
