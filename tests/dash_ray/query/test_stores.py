"""A query answers from PostgreSQL only while it holds every row the lake holds: behind the lake
(down a while, slow, or refusing rows), the lake answers; when the lake cannot be read either,
PostgreSQL's answer says it may be stale."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer

from dash_ray.lake import Lake
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.query.postgres import PostgresEngine
from dash_ray.query.stores import answer
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.schema import Column, Schema
from tests.conftest import free_port

SCHEMA = Schema((Column("device", "string"), Column("v", "double")))
BASE_US = 1_767_225_600_000_000
ALL = parse_query({"limit": "1000"}, SCHEMA)
COUNT = parse_query({"agg": "count,sum:v"}, SCHEMA)


def rows(first: int, last: int) -> pa.Table:
    seqs = list(range(first, last + 1))
    return pa.table({"seq": pa.array(seqs, pa.int64()),
                     "time": pa.array([BASE_US + s * 1_000_000 for s in seqs], pa.int64()).cast(
                         pa.timestamp("us", tz="UTC")),
                     "device": [f"d{s % 3}" for s in seqs], "v": pa.array([float(s) for s in seqs])})


class Stores:
    def __init__(self, lake: Lake, dsn: str) -> None:
        self.pipeline_id = f"st-{uuid.uuid4().hex[:8]}"
        self.lake_silver = LakeSilver(lake, self.pipeline_id)
        self.pg_silver = PostgresSilver(dsn, self.pipeline_id, list(SCHEMA.columns))
        self.duck = DuckDBEngine(lake, self.pipeline_id)
        self.pg = PostgresEngine(dsn, self.pipeline_id)

    def write(self, first: int, last: int, *, postgres: bool = True) -> None:
        self.lake_silver.write(rows(first, last), first_seq=first, last_seq=last)
        if postgres:
            self.pg_silver.write(rows(first, last), first_seq=first, last_seq=last)

    def close(self) -> None:
        for closable in (self.duck, self.pg, self.pg_silver):
            closable.close()


@pytest.fixture()
def stores(tmp_path: Path, pg_dsn: str) -> Iterator[Stores]:
    made = Stores(Lake.from_url(str(tmp_path / "lake")), pg_dsn)
    try:
        yield made
    finally:
        made.close()


def test_postgresql_answers_while_it_holds_what_the_lake_holds(stores: Stores) -> None:
    stores.write(1, 10)
    got = answer(ALL, stores.duck, stores.pg, lake_age_s=0)
    assert got.store == "postgres" and got.stale is None and len(got.body["rows"]) == 10


def test_postgresql_behind_the_lake_leaves_the_answer_to_the_lake(stores: Stores) -> None:
    stores.write(1, 10)
    stores.write(11, 20, postgres=False)  # PostgreSQL down or slow meanwhile
    for query, expected in ((ALL, 20), (COUNT, 1)):
        got = answer(query, stores.duck, stores.pg, lake_age_s=0)
        assert got.store == "lake" and got.stale is None and len(got.body["rows"]) == expected
    assert answer(COUNT, stores.duck, stores.pg, lake_age_s=0).body["rows"] == [{"count": 20, "sum_v": 210.0}]
    # Caught up: PostgreSQL answers again.
    stores.pg_silver.write(rows(11, 20), first_seq=11, last_seq=20)
    got = answer(ALL, stores.duck, stores.pg, lake_age_s=0)
    assert got.store == "postgres" and len(got.body["rows"]) == 20


def test_postgresql_holding_refused_rows_leaves_the_answer_to_the_lake(stores: Stores, pg_dsn: str) -> None:
    stores.write(1, 10)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE dash_silver."{stores.pipeline_id}" ADD CONSTRAINT small CHECK (v < 15)')
    stores.write(11, 20)
    assert stores.pg_silver.refused == 6 and stores.pg_silver.stored_seq() == 20
    got = answer(ALL, stores.duck, stores.pg, lake_age_s=0)
    assert got.store == "lake" and len(got.body["rows"]) == 20


def test_an_empty_postgresql_table_behind_a_lake_with_rows_is_not_asked(stores: Stores) -> None:
    stores.write(1, 10, postgres=False)
    got = answer(COUNT, stores.duck, stores.pg, lake_age_s=0)
    assert got.store == "lake" and got.body["rows"] == [{"count": 10, "sum_v": 55.0}]


def test_when_the_lake_cannot_be_read_a_postgresql_answer_says_it_may_be_stale(tmp_path: Path, pg_dsn: str) -> None:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
               "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="stale")
    lake = Lake.from_url("s3://stale/lake", storage_options=options)
    stores = Stores(lake, pg_dsn)
    try:
        stores.write(1, 10)
        stores.write(11, 20, postgres=False)
        assert answer(ALL, stores.duck, stores.pg, lake_age_s=60).store == "lake"  # the lake's seq is now known
        server.stop()
        # PostgreSQL is known to be behind and the lake cannot answer: PostgreSQL's rows, saying so.
        got = answer(ALL, stores.duck, stores.pg, lake_age_s=60)
        assert got.store == "postgres" and len(got.body["rows"]) == 10
        assert got.body["stale"] == {"reason": got.stale, "stored_seq": 10, "lake_seq": 20}
        assert "through seq 10" in got.stale and "could not be read" in got.stale
        # The lake cannot even be listed: PostgreSQL answers, unchecked, and says so.
        got = answer(ALL, stores.duck, stores.pg, lake_age_s=0)
        assert got.store == "postgres" and got.body["stale"]["lake_seq"] is None
        assert "could not be checked" in got.stale
    finally:
        stores.close()
        server.stop()
