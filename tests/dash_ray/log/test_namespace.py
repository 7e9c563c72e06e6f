"""Two platforms sharing one NATS server or one PostgreSQL database, each with a pipeline of the
same id: their log namespaces (`dash_ray.log.namespace`, made once per platform home) name
their logs apart, so neither reads, fences nor trims the other's (real NATS at 127.0.0.1:4222,
real PostgreSQL at 127.0.0.1:5432, every name unique to the test). And the namespace itself:
made once, kept, the old names kept for a home an earlier Dash ran in."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog import open_catalog
from dash_ray.log.base import Log
from dash_ray.log.choice import drop_log, log_name, make_log
from dash_ray.log.namespace import NAMESPACE_FILE, platform_log_namespace, ran_before
from dash_ray.settings import Settings
from dash_ray.spec import PipelineSpec
from tests.conftest import PG_ADMIN_DSN

NATS = "nats://127.0.0.1:4222"
SPEC = {"mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}}}


def _platform(home: Path) -> Settings:
    """A platform's settings as `dash-ray up` makes them: its log namespace from its home."""
    settings = Settings.from_env({}, home=str(home))
    return settings.with_(log_namespace=platform_log_namespace(home, legacy=settings.namespace))


async def _entries(log: Log) -> list[tuple[int, bytes]]:
    return [(e.key, e.data) for e in await asyncio.to_thread(log.open)]


@pytest.mark.parametrize("kind", ["jetstream", "postgres"])
async def test_two_platforms_logs_of_one_pipeline_id_in_one_backend_keep_apart(
        kind: str, tmp_path: Path, pg_dsn: str) -> None:
    pipeline_id = f"orders-{uuid.uuid4().hex[:8]}"  # the same id on both platforms
    one, two = _platform(tmp_path / "one"), _platform(tmp_path / "two")
    names = [log_name(p.pipeline().log_prefix, pipeline_id) for p in (one, two)]
    assert names[0] != names[1]

    def make(name: str) -> Log:
        return make_log(kind, folder=tmp_path / "none", name=name, nats_url=NATS, dsn=pg_dsn)
    try:
        first, second = make(names[0]), make(names[1])
        assert await _entries(first) == []
        await asyncio.gather(*(first.append(k, b"one-%d" % k) for k in (1, 2, 3)))
        # The second platform's pipeline starts: it sees none of the first's records, and
        # taking ownership of its own log does not fence the first platform's owner.
        assert await _entries(second) == []
        await asyncio.gather(*(second.append(k, b"two-%d" % k) for k in (1, 2)))
        await first.append(4, b"one-4")  # the first owner is not fenced by the second's start
        await second.trim(1)
        await first.close()
        await second.close()

        again = [make(name) for name in names]
        assert await _entries(again[0]) == [(k, b"one-%d" % k) for k in (1, 2, 3, 4)]
        # its trim dropped (at most) its own entry 1; the other platform's log kept all of its own
        assert (await _entries(again[1]))[-1:] == [(2, b"two-2")]
        for log in again:
            await log.close()
    finally:
        for name in names:
            await asyncio.to_thread(drop_log, kind, folder=tmp_path / "none", name=name, nats_url=NATS, dsn=pg_dsn)


def test_the_namespace_is_made_once_per_platform_home_and_kept(tmp_path: Path) -> None:
    made = platform_log_namespace(tmp_path / "a", legacy="dash")
    assert made.startswith("p") and len(made) == 13
    assert platform_log_namespace(tmp_path / "a", legacy="dash") == made  # read back, not made again
    assert (tmp_path / "a" / NAMESPACE_FILE).read_text().strip() == made
    assert platform_log_namespace(tmp_path / "b", legacy="dash") not in (made, "dash")
    # DASH_LOG_NAMESPACE wins and is not stored
    assert platform_log_namespace(tmp_path / "c", legacy="dash", explicit="blue") == "blue"
    assert not (tmp_path / "c" / NAMESPACE_FILE).exists()


def test_a_home_an_earlier_dash_ran_in_keeps_the_log_names_it_had(tmp_path: Path) -> None:
    home = tmp_path / "old"
    home.mkdir()
    (home / "admin.token").write_text("x")  # what an earlier `up` left, without a namespace file
    assert platform_log_namespace(home, legacy="dash") == "dash"
    # the same names as before namespaces were kept: `<ray namespace>_<id>`
    settings = Settings.from_env({}, home=str(home)).with_(log_namespace="dash")
    assert log_name(settings.pipeline().log_prefix, "orders") == log_name("dash", "orders") == "dash_orders"
    assert log_name(Settings.from_env({}, home=str(home)).log_prefix, "orders") == "dash_orders"  # none set


@pytest.fixture
def databases() -> Iterator[Callable[[], str]]:
    """Make databases of this test's own (a catalog's `dash` schema in one is this test's alone)."""
    made: list[str] = []

    def make() -> str:
        made.append(name := f"dash_ns_{uuid.uuid4().hex[:12]}")
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"{PG_ADMIN_DSN.rpartition('/')[0]}/{name}"
    yield make
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_postgresql_catalog_keeps_the_namespace_and_one_with_pipelines_is_an_earlier_platform(
        tmp_path: Path, databases: Callable[[], str]) -> None:
    own_database, pg_dsn = databases(), databases()
    assert not ran_before(tmp_path, own_database)  # no catalog yet
    catalog = open_catalog(own_database, box=SecretBox([SecretBox.generate_key()]))
    try:
        assert not ran_before(tmp_path, own_database)  # a catalog, empty
        catalog.create_pipeline(PipelineSpec.model_validate({"id": "orders", **SPEC}), secret="s" * 32)
        assert ran_before(tmp_path, own_database)
        # an earlier Dash's platform, no namespace kept: its logs keep their names
        assert platform_log_namespace(tmp_path / "head", legacy="dash", pg_dsn=own_database) == "dash"
    finally:
        catalog.close()
    # a new platform on a new catalog: one made and kept in the database, so a head rebuilt
    # with an empty home (its secrets in DASH_* variables) finds the same one again
    made = platform_log_namespace(tmp_path / "head-1", legacy="dash", pg_dsn=pg_dsn)
    assert made != "dash" and not (tmp_path / "head-1" / NAMESPACE_FILE).exists()
    assert platform_log_namespace(tmp_path / "head-2", legacy="dash", pg_dsn=pg_dsn) == made
    catalog = open_catalog(pg_dsn, box=SecretBox([SecretBox.generate_key()]))  # the catalog takes the schema as is
    catalog.close()


def test_up_makes_the_namespace_before_the_admin_token_and_reads_dash_log_namespace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dash_ray.cli.platform import _settings

    monkeypatch.delenv("DASH_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("DASH_LOG_NAMESPACE", raising=False)
    monkeypatch.delenv("DASH_PG_DSN", raising=False)
    monkeypatch.setenv("DASH_HOME", str(tmp_path / "fresh"))
    first = _settings(argparse.Namespace()).log_namespace
    assert first is not None and first != "dash"  # a new platform, though `up` then made its admin token
    assert _settings(argparse.Namespace()).log_namespace == first
    assert _settings(argparse.Namespace()).pipeline().log_namespace == first
    monkeypatch.setenv("DASH_LOG_NAMESPACE", "green-2")
    assert _settings(argparse.Namespace()).pipeline().log_prefix == "green-2"
    monkeypatch.setenv("DASH_LOG_NAMESPACE", "no/slash")
    with pytest.raises(ValueError, match="DASH_LOG_NAMESPACE"):
        _settings(argparse.Namespace())
