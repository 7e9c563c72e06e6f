"""PostgreSQL silver on the whole platform: `dash-ray up` with DASH_PG_DSN pointing at a private
PostgreSQL deploys pipelines whose rows reach PostgreSQL (the spec leaving `storage.silver`
unset, or saying `postgres`), and only the lake when the spec says `lake`; a platform without a
database refuses `storage.silver: postgres` with a 422 naming the field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from dash_ray.client import Client
from dash_ray.errors import SpecError
from tests.conftest import Running, dash, free_port
from tests.pgserver import PrivatePostgres
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

TOKEN = "dash_admin_silver-test-token"


def spec(prefix: str, **storage: Any) -> dict[str, Any]:
    return {
        "id": f"{prefix}-{uuid.uuid4().hex[:6]}",
        "mapping": {"fields": {
            "time": {"path": "$.ts", "type": "timestamp", "unit": "ms"},
            "device": {"path": "$.device", "type": "string"},
            "n": {"path": "$.n", "type": "int", "required": True},
        }},
        "flush": {"records": 1000, "seconds": 0.2},
        "storage": storage,
    }


@pytest.fixture(scope="module")
def with_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, PrivatePostgres]]:
    """`dash-ray up` in its own process and Ray instance, its catalog and silver in a private
    PostgreSQL."""
    pg = PrivatePostgres()
    home = tmp_path_factory.mktemp("silver-platform") / ".dash"
    port = free_port()
    env = {"DASH_PG_DSN": pg.dsn(), "DASH_ADMIN_TOKEN": TOKEN}
    try:
        pg.start()
        up = dash(home, port, "up", **env)
        assert up.returncode == 0, up.stdout + up.stderr
        client = Client(f"http://127.0.0.1:{port}", token=TOKEN)
        try:
            yield client, pg
        finally:
            client.close()
            down = dash(home, port, "down", **env)
            assert down.returncode == 0, down.stdout + down.stderr
    finally:
        pg.destroy()


def silver_seqs(pg: PrivatePostgres, pipeline_id: str) -> list[int]:
    with psycopg.connect(pg.dsn()) as conn:
        table = conn.execute("SELECT to_regclass(%s)", (f'dash_silver."{pipeline_id}"',)).fetchone()
        if table is None or table[0] is None:
            return []
        return [r[0] for r in conn.execute(f'SELECT seq FROM dash_silver."{pipeline_id}" ORDER BY seq')]


def test_a_deployed_pipeline_s_rows_reach_postgresql(with_database: tuple[Client, PrivatePostgres]) -> None:
    client, pg = with_database
    pipelines = {"default": spec("pg-default"), "postgres": spec("pg-asked", silver="postgres"),
                 "lake": spec("pg-lake", silver="lake")}
    last: dict[str, int] = {}
    for name, data in pipelines.items():
        secret = client.deploy(data).ingest_secret
        assert secret
        for first in range(0, 3000, 1000):
            records = [{"ts": 1_767_225_600_000 + i, "device": f"d{i % 3}", "n": i} for i in range(first, first + 1000)]
            result = client.ingest(data["id"], records, secret=secret)
            assert result.accepted == 1000
        last[name] = result.last_seq or 0
    assert last["default"] == 3000
    for name in ("default", "postgres"):
        pipeline_id = pipelines[name]["id"]
        wait_for(lambda: silver_seqs(pg, pipeline_id) == list(range(1, 3001)),
                 what=f"{name}: PostgreSQL to hold the 3000 rows")
        counters = wait_for(lambda: (c := client.get(pipeline_id).counters).get("silver_lag") == 0 and c, timeout=30,
                            what=f"{name}: no silver lag")
        assert counters["silver_seq"] == 3000 and counters["silver_error"] is None
    assert silver_seqs(pg, pipelines["lake"]["id"]) == []
    assert "silver_seq" not in client.get(pipelines["lake"]["id"]).counters


def test_postgres_silver_without_a_database_is_a_422_naming_the_field(platform: Running) -> None:
    with pytest.raises(SpecError) as refused:
        platform.client.deploy(spec("pg-none", silver="postgres"))
    assert refused.value.status == 422 and refused.value.where == "storage.silver"
    assert "DASH_PG_DSN" in refused.value.message
    # Unset, it is the lake's silver alone on this platform.
    assert platform.client.deploy(spec("pg-unset")).ingest_secret


def test_a_query_while_postgresql_lags_answers_every_stored_row_from_the_lake(
        with_database: tuple[Client, PrivatePostgres]) -> None:
    client, pg = with_database
    data = spec("pg-lag")
    pipeline_id = data["id"]
    secret = client.deploy(data).ingest_secret
    assert secret

    def ingest(first: int, count: int) -> None:
        records = [{"ts": 1_767_225_600_000 + i, "device": f"d{i % 3}", "n": i} for i in range(first, first + count)]
        assert client.ingest(pipeline_id, records, secret=secret).accepted == count

    def counted() -> tuple[int, str, str | None]:
        response = httpx.get(f"{client.url}/v1/pipelines/{pipeline_id}/query", params={"agg": "count"},
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        assert ("stale" in response.json()) == ("Dash-Query-Stale" in response.headers)
        return response.json()["rows"][0]["count"], response.headers["Dash-Query-Store"], \
            response.headers.get("Dash-Query-Stale")

    ingest(0, 1000)
    wait_for(lambda: client.get(pipeline_id).counters.get("silver_seq") == 1000, what="PostgreSQL to hold 1000 rows")
    assert counted() == (1000, "postgres", None)
    # A lock that lets readers in but holds the follower's writes: PostgreSQL falls behind.
    with psycopg.connect(pg.dsn()) as blocker:
        blocker.execute(f'LOCK TABLE dash_silver."{pipeline_id}" IN SHARE MODE')
        ingest(1000, 500)
        wait_for(lambda: client.get(pipeline_id).counters.get("stored_seq") == 1500, what="the lake to store 1500")
        assert client.get(pipeline_id).counters["silver_lag"] == 500
        count, store, stale = wait_for(lambda: (c := counted())[0] == 1500 and c,
                                       what="an answer with every stored row")
        assert (store, stale) == ("lake", None)
        blocker.rollback()
    wait_for(lambda: client.get(pipeline_id).counters.get("silver_lag") == 0, what="PostgreSQL to catch up")
    assert wait_for(lambda: (c := counted())[1] == "postgres" and c, what="PostgreSQL to answer again") == (
        1500, "postgres", None)
