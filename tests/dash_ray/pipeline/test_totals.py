"""A pipeline's totals go on across restarts (`dash_ray.pipeline.totals`), while its counters
start again (and say since when): after a clean stop, after a crash with records still in the
log, and after a crash between writing the totals and marking their range stored."""

from __future__ import annotations

from pathlib import Path

from dash_ray.ingest.batch import Ack
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.pipeline.totals import Totals, TotalsFile
from tests.dash_ray.pipeline.test_core import batch, make, reading


def totals(core: PipelineCore) -> dict:
    return core.health()["counters"]["totals"]


async def stored_then_waiting(tmp_path: Path, stored: list[dict], waiting: list[dict]) -> PipelineCore:
    """A running pipeline with `stored` in the lake and `waiting` only in its log (mapped)."""
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch(stored)])
    await core.flush()
    await core.ingest([batch(waiting)])
    core.records()
    return core


async def test_totals_continue_after_a_restart_while_counters_start_again(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch([reading(1), reading(2, temp=99.0), reading(3)])])
    await core.flush()
    first_since = core.health()["counters"]["since"]
    await core.close()
    again = make(tmp_path)
    await again.start()
    counters = again.health()["counters"]
    assert (counters["mapped"], counters["dead"]) == (0, 0)  # memory, since this start
    assert counters["since"] > first_since
    assert totals(again) == {"records": 3, "stored": 3, "mapped": 2, "dead": 1, "filtered": 0, "from_seq": 0}
    [ack] = await again.ingest([batch([reading(4, temp=-100.0), reading(5)])])
    assert isinstance(ack, Ack)
    again.records()  # maps what is durable
    assert totals(again) == {"records": 5, "stored": 3, "mapped": 3, "dead": 2, "filtered": 0, "from_seq": 0}
    await again.close()
    third = make(tmp_path)
    await third.start()
    assert totals(third) == {"records": 5, "stored": 5, "mapped": 3, "dead": 2, "filtered": 0, "from_seq": 0}
    await third.close()


async def test_a_crash_counts_the_records_left_in_the_log_once(tmp_path: Path) -> None:
    await stored_then_waiting(tmp_path, [reading(i) for i in range(4)], [reading(9, temp=99.0), reading(10)])
    # A crash: no close; the two last records are only in the log and were counted in memory.
    again = make(tmp_path)
    await again.start()
    again.records()
    assert totals(again) == {"records": 6, "stored": 4, "mapped": 5, "dead": 1, "filtered": 0, "from_seq": 0}
    await again.close()


async def test_a_crash_between_the_totals_and_the_mark_keeps_the_totals_before(tmp_path: Path) -> None:
    core = await stored_then_waiting(tmp_path, [reading(i) for i in range(3)], [reading(7, temp=99.0), reading(8)])
    # What a flush does first, then the process dies before the range's bronze file.
    before = core._stored_totals
    core._totals_file.save(before, before.plus(core._mapper.mapped))
    again = make(tmp_path)
    await again.start()
    again.records()
    assert totals(again) == {"records": 5, "stored": 3, "mapped": 4, "dead": 1, "filtered": 0, "from_seq": 0}
    await again.flush()
    assert totals(again)["stored"] == 5
    await again.close()


async def test_the_totals_are_in_the_lake_for_a_pipeline_started_on_another_node(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch([reading(1), reading(2, temp=99.0)])])
    await core.close()
    # Another node: the same lake, a log and state folder of its own.
    elsewhere = PipelineCore(core.spec, wal_dir=tmp_path / "other-node", lake=Lake.from_url(str(tmp_path / "lake")))
    await elsewhere.start()
    assert totals(elsewhere) == {"records": 2, "stored": 2, "mapped": 1, "dead": 1, "filtered": 0, "from_seq": 0}
    await elsewhere.close()


def test_a_purge_removes_the_totals_with_the_bronze_files(tmp_path: Path) -> None:
    lake = Lake.from_url(str(tmp_path / "lake"))
    TotalsFile(lake, "weather").save(Totals(), Totals(seq=4, mapped=4))
    assert TotalsFile(lake, "weather").load(4).mapped == 4
    assert lake.files("bronze", "weather") == []  # not a file any reader lists
    lake.purge("weather")
    assert TotalsFile(lake, "weather").load(4) == Totals(seq=4, from_seq=4)


async def test_a_pipeline_without_a_totals_file_counts_from_its_stored_seq(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch([reading(i) for i in range(3)])])
    await core.flush()
    await core.close()
    [kept] = (tmp_path / "lake").rglob("_totals.json")
    kept.unlink()
    again = make(tmp_path)
    await again.start()
    assert totals(again) == {"records": 3, "stored": 3, "mapped": 0, "dead": 0, "filtered": 0, "from_seq": 3}
    await again.close()
