"""A catalog in PostgreSQL is not an ingest dependency (issue 21, item 15): with the catalog's
PostgreSQL stopped, a running pipeline still acknowledges signed ingest (its log and lake are
fine) and a read token still reads, from what the web tier last heard from the registry; when
PostgreSQL is back, everything goes on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from dash_ray.client import Client
from tests.conftest import dash, free_port
from tests.pgserver import PrivatePostgres
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

TOKEN = "dash_admin_outage-test-token"


@pytest.fixture(scope="module")
def catalog_in_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, PrivatePostgres]]:
    """`dash-ray up` with its catalog in a private PostgreSQL that the test can stop."""
    pg = PrivatePostgres()
    home = tmp_path_factory.mktemp("outage-platform") / ".dash"
    port = free_port()
    env = {"DASH_PG_DSN": pg.dsn(), "DASH_ADMIN_TOKEN": TOKEN}
    try:
        pg.start()
        up = dash(home, port, "up", **env)
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield f"http://127.0.0.1:{port}", pg
        finally:
            if not pg.running:
                pg.start()
            down = dash(home, port, "down", **env)
            assert down.returncode == 0, down.stdout + down.stderr
    finally:
        pg.destroy()


def test_ingest_and_reads_go_on_while_the_catalog_s_postgresql_is_down(
        catalog_in_postgres: tuple[str, PrivatePostgres]) -> None:
    url, pg = catalog_in_postgres
    pipeline_id = f"outage-{uuid.uuid4().hex[:6]}"
    with Client(url, token=TOKEN) as admin:
        secret = admin.deploy({"id": pipeline_id, "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}},
                               "storage": {"silver": "lake"}}).ingest_secret
        reader = admin.create_token("read", name="outage reader")["token"]
        assert admin.ingest(pipeline_id, [{"n": 1}], secret=secret).accepted == 1
    with Client(url, token=reader) as client:
        assert [r["data"]["n"] for r in client.records(pipeline_id)] == [1]
    pg.stop()
    try:
        # Past every freshness bound of the web tier's memory (info 2 s, tokens 10 s), every
        # request is answered at once, none retried (a 503 would raise here).
        sent = [1]
        with Client(url, token=reader, retries=0) as client:
            stopped = time.monotonic()
            while time.monotonic() - stopped < 13:
                n = sent[-1] + 1
                assert client.ingest(pipeline_id, [{"n": n}], secret=secret).accepted == 1
                sent.append(n)
                assert [r["data"]["n"] for r in client.records(pipeline_id, limit=1000)] == sent
                time.sleep(0.5)  # pacing, not waiting for anything
        with httpx.Client(base_url=url, timeout=30) as http:  # a made-up token is still refused
            refused = http.get(f"/v1/pipelines/{pipeline_id}/records", headers={"authorization": "Bearer dash_0000"})
        assert refused.status_code == 401
    finally:
        pg.start()
    with Client(url, token=TOKEN) as admin:
        # The catalog's connection comes back with the server.
        wait_for(lambda: admin.ingest(pipeline_id, [{"n": 7}], secret=secret).accepted == 1, every=0.5,
                 what="an ingest once PostgreSQL is back")
        assert admin.get(pipeline_id).status == "running"
