"""Many pipelines in one process (`dash_ray.pipeline.shared`), without Ray: each takes ingest on
its own channel; one whose log is taken over by a newer owner fails alone (its health says so)
while its neighbours go on; it is removed and added again, and then takes ingest again with
nothing it acknowledged lost; the capacity is kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dash_ray.errors import UnavailableError
from dash_ray.ingest.batch import Ack
from dash_ray.ingest.channel import ChannelClient
from dash_ray.log.file import WriteAheadLog
from dash_ray.pipeline.shared import SharedHost
from tests.dash_ray.pipeline.test_host import batch, settings, spec_data


async def _no_dsn() -> str | None:
    return None


async def _no_secrets(pipeline_id: str) -> dict[str, str]:
    return {}


async def _send(shared: SharedHost, pipeline_id: str, count: int) -> Ack:
    client = ChannelClient(shared.get(pipeline_id).endpoint())
    try:
        [ack] = await client.call([batch(count)])
    finally:
        await client.close()
    assert isinstance(ack, Ack), ack
    return ack


async def test_one_failed_pipeline_leaves_its_neighbours_running_and_comes_back_alone(tmp_path: Path) -> None:
    shared = SharedHost(settings(tmp_path), address="127.0.0.1", capacity=5)
    ids = [f"p{i}" for i in range(5)]
    try:
        for pid in ids:
            assert (await shared.add(spec_data(pid, silver="lake"), _no_dsn, _no_secrets))["state"] == "running"
        assert shared.ids == ids and shared.load == 5
        with pytest.raises(UnavailableError, match="already runs 5"):
            await shared.add(spec_data("p5", silver="lake"), _no_dsn, _no_secrets)
        for pid in ids:
            assert (await _send(shared, pid, 2)).last_seq == 2

        # A newer owner takes p2's log (as a second process would): p2's next write fails.
        taker = WriteAheadLog(tmp_path / "wal" / "p2")
        await asyncio.to_thread(taker.open)
        await taker.close()
        client = ChannelClient(shared.get("p2").endpoint())
        try:
            [refused] = await client.call([batch(1)])
        finally:
            await client.close()
        assert isinstance(refused, UnavailableError)
        health = shared.health_many(ids)
        assert isinstance(health["p2"], str) and "failed" in health["p2"]
        assert all(isinstance(health[pid], dict) and health[pid]["state"] == "running" for pid in ids if pid != "p2")
        for pid in ids:
            if pid != "p2":
                assert (await _send(shared, pid, 1)).last_seq == 3

        # What the supervisor does: take it out without flushing, start it again.
        await shared.remove("p2", graceful=False)
        with pytest.raises(UnavailableError, match="not running in this host"):
            shared.get("p2")
        assert (await shared.add(spec_data("p2", silver="lake"), _no_dsn, _no_secrets))["state"] == "running"
        assert (await _send(shared, "p2", 1)).first_seq == 3  # seq 1..2 kept, the refused one never given
        assert [r["seq"] for r in await shared.get("p2").records(None, 10)] == [1, 2, 3]
    finally:
        await shared.close()
    assert shared.ids == []
