"""A multi-node Ray cluster on this machine for the cluster tests: `ray.cluster_utils.Cluster`
in a process of its own (the test process may already be a driver of another Ray), every node
on 127.0.0.1 with ports the OS picks and the role label of `dash.io/role`, its temp files and
address file in a private folder. The test drives it over stdin/stdout, one JSON line each:
`{"add": name, "role": r}`, `{"remove": name}`, `{"quit": true}`; it answers with the cluster's
address and every node's id by name. `Nodes` is the test's side."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# Run as a script by `Nodes`: the project root on the path for `dash_ray`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node_args(role: str, temp_dir: str) -> dict[str, Any]:
    from dash_ray.settings import ROLE_LABEL

    return {"num_cpus": 1, "labels": {ROLE_LABEL: role}, "node_ip_address": "127.0.0.1", "temp_dir": temp_dir,
            "include_dashboard": False, "dashboard_agent_listen_port": _free_port(),
            "metrics_export_port": _free_port(), "runtime_env_agent_port": _free_port(),
            "object_store_memory": 100 * 2**20}


def _descendants(pid: int) -> list[int]:
    """The processes under `pid` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def serve() -> None:
    from dash_ray.deploy.driver import enable_ray_auth, use_loopback

    use_loopback()
    enable_ray_auth()
    from ray.cluster_utils import Cluster

    temp_dir = os.path.join(os.environ["RAY_TMPDIR"], "ray")  # where Ray writes the address file too
    os.makedirs(temp_dir, exist_ok=True)
    head_args = {**_node_args(sys.argv[1], temp_dir), "gcs_server_port": _free_port(),
                 "ray_client_server_port": _free_port()}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    nodes = {"head": cluster.head_node}

    def answer(**extra: Any) -> None:
        ids = {name: node.node_id for name, node in nodes.items()}
        print(json.dumps({"address": cluster.address, "nodes": ids, **extra}), flush=True)

    answer()
    for line in sys.stdin:
        command = json.loads(line)
        if "add" in command:
            nodes[command["add"]] = cluster.add_node(**_node_args(command["role"], temp_dir))
        elif "remove" in command:
            node = nodes.pop(command["remove"])
            # Its workers (the actors) too, as with a lost machine: Ray kills its own processes
            # only, and a worker outlives its raylet for a while.
            workers = _descendants(node.all_processes["raylet"][0].process.pid)
            cluster.remove_node(node, allow_graceful=False)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif command.get("quit"):
            break
        answer()
    cluster.shutdown()
    answer(done=True)


class Nodes:
    """The test's side: the cluster process, its address, its nodes' ids by name."""

    def __init__(self, head_role: str = "web") -> None:
        # Short: Ray's Unix sockets go some 85 bytes under it.
        self.temp_dir = tempfile.mkdtemp(prefix="dcl-", dir="/tmp")
        self.env = {**os.environ, "RAY_TMPDIR": self.temp_dir, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self._process = subprocess.Popen([sys.executable, __file__, head_role], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=self.env, start_new_session=True)
        self.address = ""
        self.ids: dict[str, str] = {}
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the cluster process exited ({self._process.wait()})")
        state = json.loads(line)
        self.address, self.ids = state["address"], state["nodes"]
        return state

    def _send(self, **command: Any) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        self._read()

    def add(self, name: str, role: str) -> str:
        self._send(add=name, role=role)
        return self.ids[name]

    def remove(self, name: str) -> None:
        """Kill every process of the node, its actors too, at once (a lost machine)."""
        self._send(remove=name)

    def close(self) -> None:
        """Stop every node (by the cluster process, which started them), then the process."""
        import signal

        if self._process.poll() is None:
            try:
                self._send(quit=True)
                self._process.wait(60)
            except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError):
                pass
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        remove_tree(self.temp_dir)


def remove_tree(path: str | Path) -> None:
    """Remove a folder that processes just stopped may still have been writing into."""
    import shutil
    import time

    for _ in range(50):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            return
        time.sleep(0.1)


if __name__ == "__main__":
    serve()
