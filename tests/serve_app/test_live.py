"""`WS /v1/pipelines/{id}/live` on the running platform: the live tail, resume after a seq
(from the feed's ring and from the lake once the ring has moved on), the close codes, the
SDK's stream (sync and async) resuming by itself when the pipeline's actor is killed, and one
long poll per pipeline per replica whatever the number of sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid

import orjson
import pytest
import ray
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dash_ray.errors import AuthError, NotFoundError

pytestmark = pytest.mark.ray


def _deploy(platform, **changes) -> tuple[str, str]:
    pipeline_id = f"live-{uuid.uuid4().hex[:6]}"
    spec = {
        "id": pipeline_id,
        "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}, "device": {"path": "$.d", "type": "string"}}},
        "flush": {"records": 1000, "seconds": 0.1},
        **changes,
    }
    created = platform.client.deploy(spec)
    platform.wait_for(lambda: platform.client.get(pipeline_id).status == "running", what="running")
    return pipeline_id, created.ingest_secret


def _ws(platform, pipeline_id: str, *, after: int | None = None, token: str | None = None, header: bool = False):
    url = platform.url.replace("http://", "ws://") + f"/v1/pipelines/{pipeline_id}/live"
    params = []
    if after is not None:
        params.append(f"after={after}")
    if not header:
        params.append(f"token={token or platform.token}")
    if params:
        url += "?" + "&".join(params)
    headers = {"authorization": f"Bearer {token or platform.token}"} if header else {}
    return connect(url, additional_headers=headers, open_timeout=30)


def _collect(ws, count: int, timeout: float = 30.0) -> list[dict]:
    records: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        message = orjson.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        assert "type" not in message, message
        assert all(r["seq"] <= message["seq"] for r in message["records"])
        records += message["records"]
    return records


def _ingest(platform, pipeline_id: str, secret: str, first: int, count: int) -> None:
    platform.client.ingest(pipeline_id, [{"n": first + i, "d": f"d{i % 3}"} for i in range(count)], secret=secret)


def test_live_tail_then_resume_from_the_ring(platform) -> None:
    pipeline_id, secret = _deploy(platform)
    with _ws(platform, pipeline_id, header=True) as ws:
        hello = orjson.loads(ws.recv(timeout=30))
        assert hello == {"seq": 0, "records": []}
        sent = time.monotonic()
        _ingest(platform, pipeline_id, secret, 0, 5)
        records = _collect(ws, 5)
        latency = time.monotonic() - sent
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["data"]["n"] for r in records] == [0, 1, 2, 3, 4] and records[0]["time"]
    assert latency < 5.0
    _ingest(platform, pipeline_id, secret, 5, 5)
    with _ws(platform, pipeline_id, after=3) as ws:
        assert orjson.loads(ws.recv(timeout=30))["seq"] == 3
        resumed = _collect(ws, 7)
    assert [r["seq"] for r in resumed] == list(range(4, 11))


def test_resume_from_the_lake_once_the_ring_has_moved_on(platform) -> None:
    pipeline_id, secret = _deploy(platform)
    for start in range(0, 30_000, 5000):  # three times the feed's ring
        _ingest(platform, pipeline_id, secret, start, 5000)
    platform.wait_for(lambda: platform.client.get(pipeline_id).counters.get("stored_seq", 0) >= 30_000,
                      timeout=120, what="everything stored")
    with _ws(platform, pipeline_id, after=10) as ws:
        assert orjson.loads(ws.recv(timeout=30))["seq"] == 10
        records = _collect(ws, 30_000 - 10, timeout=120)
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(11, 30_001))
    assert [r["data"]["n"] for r in records[:3]] == [10, 11, 12]


def test_close_codes(platform) -> None:
    pipeline_id, _ = _deploy(platform)
    with _ws(platform, pipeline_id, token="dash_000000000000_nope") as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    assert closed.value.rcvd.code == 4401
    # (4403 cannot happen with today's scopes: read < write < admin, and reading needs read.)
    reader = platform.client.create_token("read", name="live-reader")["token"]
    with _ws(platform, pipeline_id, token=reader) as ws:
        assert orjson.loads(ws.recv(timeout=30)) == {"seq": 0, "records": []}
    with _ws(platform, "no-such-pipeline") as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    assert closed.value.rcvd.code == 4404
    with _ws(platform, pipeline_id, after=-1) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    assert closed.value.rcvd.code == 4400
    # Deleted while watched: the socket closes with 4404.
    with _ws(platform, pipeline_id) as ws:
        ws.recv(timeout=30)
        platform.client.delete(pipeline_id)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=60)
    assert closed.value.rcvd.code == 4404
    with pytest.raises(NotFoundError):
        next(iter(platform.client.stream("no-such-pipeline")))
    from dash_ray.client import Client

    with Client(platform.url, token="dash_000000000000_nope") as stranger, pytest.raises(AuthError):
        next(iter(stranger.stream(pipeline_id)))


def _actor_pid(platform, pipeline_id: str) -> int:
    if not ray.is_initialized():
        ray.init(address=platform.settings.ray_address or "auto", namespace=platform.settings.namespace,
                 log_to_driver=False)
    actor = ray.get_actor(f"pipeline:{pipeline_id}", namespace=platform.settings.namespace)
    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)


def test_sdk_stream_resumes_across_a_killed_pipeline_without_gaps_or_doubles(platform) -> None:
    pipeline_id, secret = _deploy(platform)
    stream = platform.client.stream(pipeline_id, after=0)
    got: list[int] = []
    done = threading.Event()

    def read() -> None:
        for record in stream:
            got.append(record["seq"])
            if len(got) >= 60:
                break
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _ingest(platform, pipeline_id, secret, 0, 20)
    platform.wait_for(lambda: len(got) >= 20, timeout=60, what="the first 20")
    os.kill(_actor_pid(platform, pipeline_id), signal.SIGKILL)
    platform.wait_for(lambda: platform.client.get(pipeline_id).status == "running" and
                      platform.client.get(pipeline_id).restarts >= 1, timeout=90, what="the restart")
    for start in (20, 40):
        platform.wait_for(lambda: _try_ingest(platform, pipeline_id, secret, start), timeout=60, what="ingest")
    assert done.wait(90), f"stream stalled at {len(got)} records"
    assert got == list(range(1, 61))


def _try_ingest(platform, pipeline_id: str, secret: str, start: int) -> bool:
    try:
        _ingest(platform, pipeline_id, secret, start, 20)
    except Exception:  # noqa: BLE001 - the web tier may not have found the new actor yet
        return False
    return True


def _feed_waiting(platform, pipeline_id: str) -> int:
    _actor_pid(platform, pipeline_id)  # connects the driver
    actor = ray.get_actor(f"pipeline:{pipeline_id}", namespace=platform.settings.namespace)
    return ray.get(actor.__ray_call__.remote(lambda self: self._core.live.waiting), timeout=30)


def test_async_stream_and_one_feed_poll_for_many_sockets(platform) -> None:
    pipeline_id, secret = _deploy(platform)

    async def watch(count: int) -> list[int]:
        seqs: list[int] = []
        async for record in platform.client.stream(pipeline_id, after=0):
            seqs.append(record["seq"])
            if len(seqs) >= count:
                return seqs
        return seqs

    async def main() -> list[list[int]]:
        watchers = [asyncio.create_task(watch(30)) for _ in range(50)]
        await asyncio.sleep(2.0)
        # 50 sockets on one replica: the pipeline's feed sees one long poll.
        assert await asyncio.to_thread(_feed_waiting, platform, pipeline_id) == 1
        await asyncio.to_thread(_ingest, platform, pipeline_id, secret, 0, 30)
        return await asyncio.wait_for(asyncio.gather(*watchers), 60)

    results = asyncio.run(main())
    assert all(r == list(range(1, 31)) for r in results)
