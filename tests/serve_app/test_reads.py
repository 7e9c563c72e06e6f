"""Reads of the stores have their own bounded threads (issue 21, item 12): a query does not use
the event loop's default executor (where registry and actor look-ups run, so ingest would
wait behind heavy reads), and past the pool's bound a read is a 503 at once."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from dash_ray.auth.tokens import hash_token
from dash_ray.errors import UnavailableError
from dash_ray.lake_roots import pipeline_lake
from dash_ray.settings import Settings
from dash_ray.silver.lake import LakeSilver
from dash_ray.spec import parse_spec
from serve_app.app import build_app
from serve_app.gateway import Gateway
from serve_app.registry_client import RegistryClient
from tests.dash_ray.query.conftest import to_table
from tests.serve_app.test_gateway import ADMIN, FakeRegistry
from tests.waiting import until

BASE = 1_777_636_800_000_000


async def test_a_query_does_not_wait_for_the_loop_s_default_executor(tmp_path: Path) -> None:
    """With every thread of the default executor busy (as heavy reads made it), a query is
    still answered: it runs on the read threads."""
    settings = Settings.from_env(env={}, home=str(tmp_path), admin_token_hash=hash_token(ADMIN))
    registry = FakeRegistry()
    spec = parse_spec({"id": "weather"})
    lake = pipeline_lake(spec, lake_url=settings.lake_url, lake_options=None)
    LakeSilver(lake, "weather").write(to_table([{"seq": 1, "time": BASE}, {"seq": 2, "time": BASE + 1}]),
                                      first_seq=1, last_seq=2)
    gateway = Gateway(settings.web(), registry=RegistryClient(settings.namespace, handle=registry))
    app = build_app(settings.web(), gateway)
    loop = asyncio.get_running_loop()
    busy = ThreadPoolExecutor(1)
    release = threading.Event()
    loop.set_default_executor(busy)
    blocker = loop.run_in_executor(None, release.wait)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash",
                                     headers={"authorization": f"Bearer {ADMIN}"}) as http:
            response = await asyncio.wait_for(http.get("/v1/pipelines/weather/query", params={"agg": "count"}), 10)
        assert response.status_code == 200, response.text
        assert response.json() == {"rows": [{"count": 2}]}
    finally:
        release.set()
        await blocker
        busy.shutdown()


async def test_past_its_bound_a_read_is_refused_at_once() -> None:
    from serve_app.reads import ReadPool

    pool = ReadPool(threads=1, queue=1)
    release = threading.Event()
    held = [asyncio.ensure_future(pool.run(release.wait)) for _ in range(2)]
    await until(lambda: pool.active == 2, what="one read running and one waiting")
    started = time.monotonic()
    with pytest.raises(UnavailableError) as caught:
        await pool.run(lambda: 1)
    assert time.monotonic() - started < 0.5
    assert caught.value.status == 503 and caught.value.retry_after >= 1
    release.set()
    await asyncio.gather(*held)
    assert pool.active == 0
    assert await pool.run(lambda: 7) == 7  # room again
    pool.close()


async def test_a_read_whose_caller_went_away_holds_its_place_until_its_thread_is_done() -> None:
    from serve_app.reads import ReadPool

    pool = ReadPool(threads=1, queue=0)
    release = threading.Event()
    call = asyncio.ensure_future(pool.run(release.wait))
    await until(lambda: pool.active == 1, what="the read in its thread")
    call.cancel()
    with pytest.raises(UnavailableError):
        await pool.run(lambda: 1)  # the thread still runs the first one
    release.set()
    await until(lambda: not pool.active, what="the thread to finish the first read")
    assert await pool.run(lambda: 2) == 2
    pool.close()
