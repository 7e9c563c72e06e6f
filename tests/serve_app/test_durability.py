"""202 means durable: ingest under load, kill the pipeline actor (and, separately, the whole
local Ray instance with SIGKILL), restart, and find every acknowledged record in the lake
exactly once. Clients retry refused requests with the same Idempotency-Key, as the SDK does,
so every record is eventually acknowledged and none may be stored twice."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest
import ray

from dash_ray.ingest.signing import signature_header
from dash_ray.lake import Lake
from tests.conftest import dash, free_port
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPEC = {
    "source": {"kind": "push"},
    "mapping": {"fields": {"n": {"path": "$.n", "type": "int", "required": True},
                           "client": {"path": "$.client", "type": "string"}}},
    "flush": {"records": 500, "seconds": 0.3},
}


class Loader:
    """`clients` threads, each sending batches of `per_batch` numbered records until
    `total` are acknowledged; a refused or cut-off request is sent again, same key."""

    def __init__(self, url: str, pipeline_id: str, secret: str, *, total: int, per_batch: int = 5,
                 clients: int = 8) -> None:
        self.url = f"{url}/v1/pipelines/{pipeline_id}/events"
        self.secret = secret
        self.total, self.per_batch, self.clients = total, per_batch, clients
        self.acked: set[int] = set()
        self.retries = 0
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(clients)]

    def start(self) -> Loader:
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), f"load did not finish: {len(self.acked)} acked"

    def _claim(self) -> list[int] | None:
        with self._lock:
            if self._next >= self.total:
                return None
            first = self._next
            self._next = min(self.total, first + self.per_batch)
            return list(range(first, self._next))

    def _run(self, client_no: int) -> None:
        with httpx.Client(timeout=30) as http:
            while (numbers := self._claim()) is not None:
                body = b"".join(orjson.dumps({"n": n, "client": f"c{client_no}"}) + b"\n" for n in numbers)
                key = f"batch-{numbers[0]}"
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    headers = {"content-type": "application/x-ndjson", "idempotency-key": key,
                               "dash-signature": signature_header(self.secret, body)}
                    try:
                        response = http.post(self.url, content=body, headers=headers)
                    except httpx.TransportError:
                        status = 0
                    else:
                        status = response.status_code
                    with self._lock:
                        self.statuses[status] = self.statuses.get(status, 0) + 1
                    if status == 202:
                        with self._lock:
                            self.acked.update(numbers)
                        break
                    assert status in (0, 429, 503), f"unexpected {status}: {response.text}"
                    with self._lock:
                        self.retries += 1
                    time.sleep(0.1)  # a client's back-off before it retries, not a wait
                else:
                    raise AssertionError(f"batch {key} never acknowledged")

    def progress(self) -> int:
        with self._lock:
            return len(self.acked)


def stored_numbers(lake_url: str, pipeline_id: str) -> list[int]:
    dataset = Lake.from_url(lake_url).dataset("silver", pipeline_id)
    if dataset is None:
        return []
    return [row[0] for row in duckdb.sql("SELECT n FROM dataset ORDER BY n").fetchall()]


def assert_exactly_once(lake_url: str, pipeline_id: str, acked: set[int], total: int) -> None:
    assert acked == set(range(total))
    numbers = wait_for(lambda: (ns := stored_numbers(lake_url, pipeline_id)) and len(ns) >= total and ns,
                       timeout=120, what="every acknowledged record in the lake")
    assert numbers == list(range(total)), "an acknowledged record is missing or stored twice"


def test_killing_the_pipeline_actor_under_load_loses_nothing(platform) -> None:
    pipeline_id = f"durable-{uuid.uuid4().hex[:6]}"
    created = platform.client.deploy({"id": pipeline_id, **SPEC})
    total = 4000
    loader = Loader(platform.url, pipeline_id, created.ingest_secret, total=total).start()
    wait_for(lambda: loader.progress() >= total // 4, timeout=120, what="a quarter of the load")
    actor = ray.get_actor(f"pipeline:{pipeline_id}", namespace=platform.settings.namespace)
    ray.kill(actor, no_restart=True)
    loader.join()
    assert loader.statuses.get(503, 0) + loader.statuses.get(0, 0) > 0, loader.statuses
    assert platform.client.get(pipeline_id).restarts == 1
    assert_exactly_once(platform.settings.lake_url, pipeline_id, loader.acked, total)


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
        except OSError:
            pass
    return alive


def _sigkill_everything(home: Path) -> set[int]:
    """What a power cut does to the Ray instance: every process of it dies at once. The pids
    killed."""
    run = orjson.loads((home / "run.json").read_text())
    marker = run["temp_dir"].encode()
    victims = {run["pid"]}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    victims.add(int(entry.name))
            except OSError:
                pass
    os.killpg(run["pid"], signal.SIGKILL)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


def test_sigkill_of_the_whole_ray_instance_under_load_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / ".dash"
    port = free_port()
    up = dash(home, port, "up")
    assert up.returncode == 0, up.stderr
    try:
        token = (home / "admin.token").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        headers = {"authorization": f"Bearer {token}"}
        pipeline_id = "power-cut"
        response = httpx.put(f"{url}/v1/pipelines/{pipeline_id}", json={"id": pipeline_id, **SPEC},
                             headers=headers, timeout=60)
        assert response.status_code == 201, response.text
        secret = response.json()["ingest_secret"]
        total = 3000
        loader = Loader(url, pipeline_id, secret, total=total).start()
        wait_for(lambda: loader.progress() >= total // 3, timeout=120, what="a third of the load")
        victims = _sigkill_everything(home)
        wait_for(lambda: not _alive(victims), timeout=30, every=0.1, what="every killed process gone")
        # The loader keeps retrying while the platform comes back.
        again = dash(home, port, "up")
        assert again.returncode == 0, again.stdout + again.stderr
        loader.join()
        status = httpx.get(f"{url}/v1/pipelines/{pipeline_id}", headers=headers, timeout=30).json()
        assert status["status"] == "running"
        assert_exactly_once(str(home / "lake"), pipeline_id, loader.acked, total)
    finally:
        down = dash(home, port, "down")
        assert down.returncode == 0, down.stderr
