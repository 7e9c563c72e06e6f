"""What a replay selects and what its job reports (issue 22.6, 22.8): `from`/`to` are on the
event time, as in `query`; `received_from`/`received_to` on the receive time; a job says what
was asked and how many stored records that named, apart from what it rewrote (whole stored
files); requests that run backwards or mix kinds are refused."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import orjson
import pytest

from dash_ray.errors import MalformedBodyError
from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.lifecycle.selection import ReplayRequest
from dash_ray.pipeline.core import PipelineCore
from dash_ray.spec import parse_spec
from tests.dash_ray.lifecycle.test_replay import V1, V2, area, finish

MAY_1 = int(dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc).timestamp())


def us(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


async def stored(tmp_path: Path, received_us: list[int]) -> None:
    """Four commits of 20 readings, each commit received at its own time, with event times
    from April 30th 18:00 every 20 minutes (so May 1st holds readings 19..90, seqs 19..80)."""
    core = PipelineCore(parse_spec(V1), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    for c, received in enumerate(received_us):
        batch = [{"ts": MAY_1 - 6 * 3600 + (c * 20 + i) * 1200, "d": "d1", "v": 1.0} for i in range(20)]
        await core.ingest([RawBatch(b"".join(orjson.dumps(r) + b"\n" for r in batch), 20, received)])
        await core.flush()
    await core.close()


async def fixed(tmp_path: Path) -> PipelineCore:
    core = PipelineCore(parse_spec(V2), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    return core


def rebuilt(tmp_path: Path) -> list[int]:
    return [s for s, v in zip(area(tmp_path, "silver"), area(tmp_path, "silver", "v10"), strict=True) if v is not None]


async def test_a_job_reports_what_was_asked_apart_from_what_it_rewrote(tmp_path: Path) -> None:
    now = time.time_ns() // 1000
    await stored(tmp_path, [now] * 4)
    core = await fixed(tmp_path)
    job = await finish(core, core.replays.replay(first_seq=1, last_seq=5).id)
    assert job["asked"] == {"from_seq": 1, "to_seq": 5} and job["matched"] == 5
    assert job["total"] == job["done"] == job["replayed"] == 20 and job["kept"] == 0 and job["note"] is None
    assert rebuilt(tmp_path) == list(range(1, 21))  # the whole file holding them
    past_the_end = await finish(core, core.replays.replay(first_seq=75, last_seq=500).id)
    assert past_the_end["matched"] == 6 and past_the_end["total"] == 20
    await core.close()


async def test_from_and_to_are_the_event_time_as_in_query(tmp_path: Path) -> None:
    now = time.time_ns() // 1000
    await stored(tmp_path, [now] * 4)  # received today, about May 1st 2026
    core = await fixed(tmp_path)
    job = await finish(core, core.replays.replay(start_us=us("2026-05-01"), end_us=us("2026-05-02")).id)
    assert job["state"] == "done" and job["matched"] == 80 - 18
    assert job["asked"] == {"from": "2026-05-01T00:00:00Z", "to": "2026-05-02T00:00:00Z"}
    assert rebuilt(tmp_path) == list(range(1, 81))  # their files, whole
    # Nothing was received in that window: by receive time it names nothing.
    by_receipt = await finish(core, core.replays.replay(received_start_us=us("2026-05-01"),
                                                        received_end_us=us("2026-05-02")).id)
    assert by_receipt["matched"] == 0 and by_receipt["total"] == 0
    assert by_receipt["asked"] == {"received_from": "2026-05-01T00:00:00Z", "received_to": "2026-05-02T00:00:00Z"}
    await core.close()


async def test_an_event_time_window_rewrites_only_the_files_holding_it(tmp_path: Path) -> None:
    now = time.time_ns() // 1000
    await stored(tmp_path, [now] * 4)
    core = await fixed(tmp_path)
    # 01:00 to 02:00 on May 1st: readings 24..26 (seqs 24..26), all in the second commit.
    job = await finish(core, core.replays.replay(start_us=us("2026-05-01T01:00:00"),
                                                 end_us=us("2026-05-01T02:00:00")).id)
    assert job["matched"] == 3 and job["total"] == 20
    assert rebuilt(tmp_path) == list(range(21, 41))
    await core.close()


async def test_received_from_and_to_select_by_arrival(tmp_path: Path) -> None:
    day = 86_400_000_000
    now = time.time_ns() // 1000
    await stored(tmp_path, [now - 3 * day, now - 2 * day, now - day, now])
    core = await fixed(tmp_path)
    job = await finish(core, core.replays.replay(received_start_us=now - 2 * day - 1, received_end_us=now - day).id)
    assert job["matched"] == 20 and job["total"] == 20
    assert rebuilt(tmp_path) == list(range(21, 41))
    await core.close()


async def test_requests_that_run_backwards_or_mix_kinds_are_refused(tmp_path: Path) -> None:
    await stored(tmp_path, [time.time_ns() // 1000])
    core = await fixed(tmp_path)
    with pytest.raises(MalformedBodyError, match="'from_seq' is after 'to_seq'"):
        core.replays.replay(first_seq=10, last_seq=5)
    with pytest.raises(MalformedBodyError, match="'from' is after 'to'"):
        core.replays.replay(start_us=us("2026-05-02"), end_us=us("2026-05-01"))
    with pytest.raises(MalformedBodyError, match="not from and from_seq"):
        core.replays.replay(start_us=us("2026-05-01"), first_seq=3)
    assert core.replays.replay(first_seq=5, last_seq=5).id == "replayed.1"  # refused ones take no number
    await core.close()


async def test_a_dead_replay_counts_the_dead_letters_it_was_asked_for(tmp_path: Path) -> None:
    core = PipelineCore(parse_spec(V1), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    for c in range(3):  # one dead letter (v over 50) in each of the first two commits
        batch = [{"ts": MAY_1 + c * 20 + i, "d": "d1", "v": 70.0 if i == 3 and c < 2 else 1.0} for i in range(20)]
        await core.ingest([RawBatch(b"".join(orjson.dumps(r) + b"\n" for r in batch), 20, time.time_ns() // 1000)])
        await core.flush()
    await core.close()
    core = await fixed(tmp_path)
    job = await finish(core, core.replays.replay_dead().id)
    assert job["kind"] == "dead-replay" and job["asked"] == {} and job["matched"] == 2 and job["total"] == 40
    assert area(tmp_path, "dead") == []
    await core.close()


@pytest.mark.parametrize(("body", "where"), [
    ({"from": "soon"}, "from"), ({"received_to": "soon"}, "received_to"), ({"from_seq": -1}, "from_seq"),
    ({"to_seq": 1.5}, "to_seq"), ({"from_seq": 10, "to_seq": 5}, "from_seq"),
    ({"from": "2026-05-01", "received_to": 0}, "received_from"), ({"nope": 1, "from": 0}, "nope"),
    (["from"], "body")])
def test_a_replay_body_is_checked_field_by_field(body: object, where: str) -> None:
    with pytest.raises(MalformedBodyError) as refused:
        ReplayRequest.from_body(body)
    assert refused.value.where == where
    if where.endswith(("from", "to")) and where != "received_from":
        assert repr(where) in refused.value.message  # the body's own name, not the query API's


def test_a_replay_body_takes_the_query_apis_times_and_gives_back_what_it_asked() -> None:
    assert ReplayRequest.from_body({}) == ReplayRequest()
    asked = ReplayRequest.from_body({"from": "2026-05-01", "to": MAY_1 + 86_400})
    assert (asked.start_us, asked.end_us) == (MAY_1 * 10**6, (MAY_1 + 86_400) * 10**6)
    assert asked.asked() == {"from": "2026-05-01T00:00:00Z", "to": "2026-05-02T00:00:00Z"}
    seqs = ReplayRequest.from_body({"from_seq": 3, "to_seq": None})
    assert (seqs.first_seq, seqs.last_seq) == (3, None)
    assert ReplayRequest.from_body({"received_from": MAY_1}).received_start_us == MAY_1 * 10**6
