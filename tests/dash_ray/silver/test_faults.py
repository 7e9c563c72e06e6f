"""Faults under a running pipeline (PipelineCore, no Ray) with PostgreSQL silver on, against
real servers the tests start and stop: a private PostgreSQL (stopped like a crash, refusing
with terminated backends, out of connections) and a private S3 server (stopped, then started
again on the same port). Through each, ingest keeps being acknowledged, and afterwards the
PostgreSQL silver table, the lake's silver and what was acknowledged hold the same records,
each once."""

from __future__ import annotations

import asyncio
import re
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from dash_ray.errors import UnavailableError
from dash_ray.ingest.batch import Ack
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.silver.choice import postgres_follower
from dash_ray.silver.follower import SilverFollower
from dash_ray.spec import parse_spec
from serve_app.responses import error_response
from tests.dash_ray.silver.conftest import (
    MAX_CONNECTIONS,
    RESERVED,
    acked_seqs,
    batch,
    lake_rows,
    pg_progress,
    pg_rows,
    rollups_match_rows,
    spec_data,
)
from tests.pgserver import PrivatePostgres
from tests.waiting import until, wait_for

CALLS = 150
PER_CALL = 100


class Run:
    """One pipeline (its log and lake in `tmp_path`) with a PostgreSQL follower, and what it
    acknowledged; `restart()` builds a new core and follower on the same folders."""

    def __init__(self, tmp_path: Path, dsn: str, lake: Lake | None = None, **spec_changes: Any) -> None:
        self.spec = parse_spec(spec_data(f"f-{uuid.uuid4().hex[:8]}", **spec_changes))
        self.tmp_path = tmp_path
        self.dsn = dsn
        self.lake = lake or Lake.from_url(str(tmp_path / "lake"))
        self.acks: list[Ack] = []
        self.next_n = 0
        self.core, self.follower = self._make()

    def _make(self) -> tuple[PipelineCore, SilverFollower]:
        follower = postgres_follower(self.spec, self.lake, self.dsn)
        follower.backoff_s, follower.max_backoff_s = 0.05, 0.5
        core = PipelineCore(self.spec, wal_dir=self.tmp_path / "wal", lake=self.lake, followers=[follower])
        return core, follower

    async def restart(self) -> None:
        await self.core.close()
        self.core, self.follower = self._make()
        await self.core.start()

    async def drive(self, calls: int = CALLS, per_call: int = PER_CALL, pad: int = 0) -> list[float]:
        """Ingest `calls` batches one after another; the seconds each ack took."""
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            [ack] = await self.core.ingest([batch(self.next_n, per_call, pad=pad)])
            latencies.append(time.perf_counter() - started)
            assert isinstance(ack, Ack), ack
            self.acks.append(ack)
            self.next_n += per_call
            await asyncio.sleep(0.002)  # a client's pace: flushes and the follower run meanwhile
        return latencies

    async def settle(self, timeout: float = 60.0) -> None:
        """Store everything acknowledged, then wait for PostgreSQL to hold all of it."""
        await self.core.flush()
        await asyncio.wait_for(self.follower.wait_stored(self.core.counters.stored_seq), timeout)

    def check(self) -> None:
        """PostgreSQL = the lake's silver = what was acknowledged, each record once."""
        acked = acked_seqs(self.acks)
        assert len(acked) == len(set(acked)) == self.next_n
        in_lake = lake_rows(self.lake, self.spec.id)
        in_pg = pg_rows(self.dsn, self.spec.id)
        assert [r[0] for r in in_lake] == acked
        assert in_pg == in_lake
        assert pg_progress(self.dsn, self.spec.id) == acked[-1]
        rollups_match_rows(self.dsn, self.spec.id)
        counters = self.core.health()["counters"]
        assert counters["silver_seq"] == acked[-1] and counters["silver_lag"] == 0
        assert counters["silver_error"] is None


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ms = sorted(x * 1000 for x in latencies)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def assert_latency_held(name: str, before: list[float], during: list[float]) -> None:
    (p50_before, p99_before), (p50_during, p99_during) = percentiles(before), percentiles(during)
    print(f"\n{name}: ack p50 {p50_before:.2f} -> {p50_during:.2f} ms, p99 {p99_before:.2f} -> {p99_during:.2f} ms")
    # Generous: a shared 2-core machine is noisy; a follower on the ack path would add whole
    # connection timeouts (seconds), far past these bounds.
    assert p50_during <= 3 * p50_before + 2.0
    assert p99_during <= 5 * p99_before + 20.0


async def test_postgres_stopped_mid_ingest_is_caught_up_and_acks_stay_fast(
        tmp_path: Path, pg: PrivatePostgres) -> None:
    run = Run(tmp_path, pg.dsn())
    await run.core.start()
    before = await run.drive()
    await run.settle()
    pg.stop("immediate")  # like a crash: what it committed survives, nothing else
    during = await run.drive()
    counters = run.core.health()["counters"]
    assert counters["silver_error"] is not None and "connect" in counters["silver_error"].lower()
    assert counters["silver_lag"] > 0 and counters["stored_seq"] > counters["silver_seq"]
    assert run.core.counters.stored_seq > CALLS * PER_CALL  # the lake went on storing
    failures = run.follower.failures
    pg.start()
    await run.settle()
    assert failures >= 2  # retried, with back-off
    assert_latency_held("PostgreSQL stopped", before, during)
    run.check()
    await run.core.close()


async def test_postgres_killing_every_connection_is_retried_and_caught_up(
        tmp_path: Path, pg: PrivatePostgres) -> None:
    run = Run(tmp_path, pg.dsn())
    await run.core.start()
    before = await run.drive()
    stop = threading.Event()

    def terminate_loop() -> None:
        while not stop.is_set():
            pg.terminate("dash")
            time.sleep(0.01)  # the killer's pace, not a wait

    killer = threading.Thread(target=terminate_loop, daemon=True)
    killer.start()
    try:
        during = await run.drive()
        await until(lambda: run.follower.failures >= 1, timeout=30, what="the follower to lose a connection")
    finally:
        stop.set()
        killer.join()
    assert run.follower.failures >= 1
    await run.settle()
    assert_latency_held("backends terminated", before, during)
    run.check()
    await run.core.close()


def hog_connections(pg: PrivatePostgres, slots: int) -> list[psycopg.Connection[Any]]:
    """Hold every connection slot the role `dash` can have, disconnecting whoever else holds
    one (the follower) until the fillers have them all."""
    held: list[psycopg.Connection[Any]] = []

    def take_every_slot() -> bool:
        while len(held) < slots:
            try:
                held.append(psycopg.connect(pg.dsn()))
            except psycopg.OperationalError:
                with pg.admin() as admin:
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'dash'"
                                  " AND NOT (pid = ANY(%s))", ([c.info.backend_pid for c in held],))
                return False  # again once the backends told to go are gone
        return True

    wait_for(take_every_slot, timeout=30, every=0.02, what="every connection slot")
    return held


async def test_postgres_out_of_connections_is_retried_and_caught_up(tmp_path: Path, pg: PrivatePostgres) -> None:
    run = Run(tmp_path, pg.dsn())
    await run.core.start()
    before = await run.drive()
    held = await asyncio.to_thread(hog_connections, pg, MAX_CONNECTIONS - RESERVED)
    try:
        during = await run.drive()
        # PostgreSQL 15 says "remaining connection slots are reserved ..." (16+: "too many clients").
        refused = re.compile("slots are reserved|too many clients")
        await until(lambda: refused.search(run.follower.counters()["silver_error"] or ""), timeout=30,
                    what="the follower to be refused")
    finally:
        for conn in held:
            conn.close()
    await run.settle()
    assert_latency_held("connections exhausted", before, during)
    run.check()
    await run.core.close()


async def test_the_pipeline_restarted_while_postgres_is_down_catches_up_later(
        tmp_path: Path, pg: PrivatePostgres) -> None:
    run = Run(tmp_path, pg.dsn())
    await run.core.start()
    await run.drive(50)
    await run.settle()
    pg.stop("fast")
    await run.drive(50)
    await run.restart()  # the follower's queue is gone; the new one reads its progress... later
    await run.drive(50)
    await run.core.flush()
    assert run.core.health()["counters"]["silver_error"] is not None
    pg.start()
    await run.settle()
    assert run.follower.catch_ups >= 1
    run.check()
    await run.restart()  # and once more, with nothing to catch up
    await run.settle()
    run.check()
    await run.core.close()


# -- the lake unreachable --------------------------------------------------------------------


class S3Server:
    """A moto S3 server of our own on a fixed port. moto keeps its buckets in this process's
    memory (module-level backends), not in the server object, so a new server started on the
    same port serves the same buckets: stopping ours closes the port (clients are refused),
    starting a new one brings the lake back whole."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self.start()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        self._server.stop()  # stops serving, but leaves the socket listening: close it too
        self._server._server.server_close()


@pytest.fixture()
def s3() -> Iterator[S3Server]:
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


async def test_the_lake_unreachable_fills_the_backlog_then_503_and_all_is_stored_when_it_returns(
        tmp_path: Path, pg: PrivatePostgres, s3: S3Server) -> None:
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    lake = Lake.from_url(f"s3://{bucket}/lake", storage_options={
        "key": "testing", "secret": "testing",
        "client_kwargs": {"endpoint_url": s3.endpoint, "region_name": "us-east-1"},
        "config_kwargs": {"connect_timeout": 1, "read_timeout": 5, "retries": {"max_attempts": 1}}})
    queue_bytes = 1024 * 1024
    run = Run(tmp_path, pg.dsn(), lake, limits={"queue_records": 1_000_000, "queue_bytes": queue_bytes})
    lake.check()
    await run.core.start()
    await run.drive(30)
    await run.settle()

    s3.stop()
    acked_before = len(run.acks)
    await run.drive(3, pad=400)  # ~45 KB a call
    await until(lambda: run.core.health()["flush_error"] is not None, timeout=30, what="a failed flush")
    refusal = None
    while refusal is None:
        [answer] = await run.core.ingest([batch(run.next_n, PER_CALL, pad=400)])
        if isinstance(answer, Ack):
            run.acks.append(answer)
            run.next_n += PER_CALL
        else:
            refusal = answer
    counters = run.core.health()["counters"]
    assert len(run.acks) - acked_before >= 15  # acknowledged into the log while the lake was away
    assert queue_bytes - 50_000 < counters["pending_bytes"] <= queue_bytes
    assert isinstance(refusal, UnavailableError) and refusal.status == 503 and refusal.retry_after == 5.0
    assert "cannot store" in refusal.message and "backlog" in refusal.message
    response = error_response(refusal)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"

    s3.start()  # same port, same buckets
    await run.settle()
    run.check()
    bronze = lake.read("bronze", run.spec.id, columns=["seq"])
    assert bronze is not None and bronze.column("seq").to_pylist() == acked_seqs(run.acks)
    [ack] = await run.core.ingest([batch(run.next_n, PER_CALL)])
    assert isinstance(ack, Ack)
    run.acks.append(ack)
    run.next_n += PER_CALL
    await run.settle()
    run.check()
    await run.core.close()
