"""The supervisor's admin calls over a fake runtime and a real SQLite catalog: create, update,
an identical spec changing nothing, concurrent creators, delete with purge under the lock,
restart by hand, counters fetched at request time, and the lake-roots rule."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from dash_ray.errors import NotFoundError, SpecError
from dash_ray.lake_roots import LakeRoots
from dash_ray.spec import PipelineSpec
from dash_ray.supervision.supervisor import Supervisor
from tests.dash_ray.supervision.conftest import FakeClock, FakeRuntime, Place, settle, spec, until_status
from tests.waiting import until


async def booted(make) -> Supervisor:
    supervisor = make()
    await supervisor.boot()
    return supervisor


async def test_put_creates_records_and_starts(make, runtime: FakeRuntime, place: Place) -> None:
    supervisor = await booted(make)
    deployed = await supervisor.put(spec())
    assert deployed.created and deployed.ingest_secret and deployed.ingest_secret.startswith("whsec_")
    view = deployed.pipeline
    assert (view.id, view.status, view.version, view.restarts, view.last_error) == ("weather", "running", 1, 0, None)
    assert list(view.spec.mapping.fields) == ["temp_c", "feels_f"]
    assert runtime.starts("weather") == 1
    stored = place.stored("weather")
    assert stored is not None and stored.status == "running"
    assert [s.secret for s in stored.secrets] == [deployed.ingest_secret]
    assert [v.id for v in await supervisor.list()] == ["weather"]


async def test_update_bumps_the_version_and_replaces_the_process(make, runtime: FakeRuntime) -> None:
    supervisor = await booted(make)
    await supervisor.put(spec())
    first = runtime.process("weather")
    updated = await supervisor.put(spec(hot_records=7))
    assert not updated.created and updated.ingest_secret is None
    assert updated.pipeline.version == 2 and updated.pipeline.spec.hot_records == 7
    assert runtime.closed == [first] and runtime.killed == [first]  # flushed, then killed
    assert runtime.process("weather") is not first and updated.pipeline.status == "running"


async def test_an_identical_spec_changes_nothing(make, runtime: FakeRuntime, place: Place) -> None:
    supervisor = await booted(make)
    created = await supervisor.put(spec())
    again = await supervisor.put(spec())
    assert not again.created and again.ingest_secret is None
    assert again.pipeline.version == 1 and again.pipeline.status == "running"
    assert runtime.starts("weather") == 1 and runtime.closed == []
    assert place.stored("weather").version == 1  # type: ignore[union-attr]
    # The same fields in another order are another spec.
    fields = created.pipeline.spec.to_json_dict()["mapping"]["fields"]
    swapped = spec(mapping={"fields": {"temp_c": fields["temp_c"], "feels_f": fields["feels_f"],
                                       "other": {"path": "$.o"}}})
    assert (await supervisor.put(swapped)).pipeline.version == 2


async def test_concurrent_creators_make_one_pipeline_and_keep_its_secret(make, runtime: FakeRuntime,
                                                                          place: Place) -> None:
    supervisor = await booted(make)
    runtime.start_gate = asyncio.Event()
    puts = [asyncio.ensure_future(supervisor.put(spec())) for _ in range(4)]
    await settle()
    runtime.start_gate.set()
    results = await asyncio.gather(*puts)
    created = [r for r in results if r.created]
    assert len(created) == 1 and created[0].ingest_secret
    assert all(r.ingest_secret is None and r.pipeline.version == 1 for r in results if not r.created)
    assert [s.secret for s in place.stored("weather").secrets] == [created[0].ingest_secret]  # type: ignore[union-attr]
    assert runtime.starts("weather") == 1


async def test_purge_runs_under_the_lock_so_a_new_put_waits_for_it(place: Place, runtime: FakeRuntime,
                                                                   clock: FakeClock, make) -> None:
    events: list[str] = []
    release = asyncio.Event()

    async def purge(target: PipelineSpec, catalog: object) -> None:
        events.append(f"purge {target.id}")
        await release.wait()
        events.append("purged")

    supervisor = make(purge=purge)
    await supervisor.boot()
    await supervisor.put(spec())
    deleting = asyncio.ensure_future(supervisor.delete("weather", purge=True))
    await until(lambda: events == ["purge weather"], what="the purge to begin")
    putting = asyncio.ensure_future(supervisor.put(spec()))
    await settle()
    await asyncio.sleep(0.05)  # not a synchronisation: a window in which the PUT must not go through
    assert not putting.done() and runtime.starts("weather") == 1  # the PUT waits for the purge
    release.set()
    await deleting
    again = await putting
    assert events == ["purge weather", "purged"]
    assert again.created and again.ingest_secret and runtime.starts("weather") == 2
    assert again.pipeline.status == "running"


async def test_delete_stops_gracefully_and_forgets(make, runtime: FakeRuntime, place: Place) -> None:
    supervisor = await booted(make)
    await supervisor.put(spec())
    process = runtime.process("weather")
    await supervisor.delete("weather")
    assert runtime.closed == [process] and runtime.killed == [process]
    assert place.stored("weather") is None
    with pytest.raises(NotFoundError):
        await supervisor.get("weather")
    with pytest.raises(NotFoundError):
        await supervisor.delete("weather")


async def test_restart_by_hand_revives_a_failed_pipeline(make, runtime: FakeRuntime, clock: FakeClock) -> None:
    supervisor = await booted(make)
    runtime.start_error["weather"] = OSError("lake /x is not usable")
    await supervisor.put(spec())
    for attempt, delay in enumerate((1, 2, 4), start=2):
        await clock.advance(delay)
        await until(lambda: len(runtime.attempts) == attempt, what=f"attempt {attempt}")
    await until_status(supervisor, "weather", "failed", what="giving up")
    del runtime.start_error["weather"]
    view = await supervisor.restart("weather")
    assert view.status == "running" and view.restarts == 3 and view.last_error is None


async def test_counters_are_fetched_when_asked_else_the_last_known(make, runtime: FakeRuntime,
                                                                   clock: FakeClock) -> None:
    supervisor = await booted(make)
    await supervisor.put(spec())
    started_at = clock.now()
    process = runtime.process("weather")
    process.counters.update(mapped=5, dead=2, filtered=1, last_seq=8, stored_seq=3)
    await clock.advance(10)
    view = await supervisor.get("weather")
    assert (view.counters["mapped"], view.counters["dead"], view.counters["filtered"]) == (5, 2, 1)
    assert view.counters_at == started_at + dt.timedelta(seconds=10) and view.waiting_in_log == 5
    process.hang = True  # no answer within fresh_health_timeout_s: the last known counters
    process.counters.update(mapped=6)
    await clock.advance(10)
    later = await supervisor.get("weather")
    assert later.counters["mapped"] == 5 and later.counters_at == view.counters_at
    assert later.status == "running"  # a slow answer here is not a crash; the health rounds judge
    listed = await supervisor.list()
    assert listed[0].counters["mapped"] == 5


async def test_put_applies_the_lake_roots_rule(make, runtime: FakeRuntime, place: Place) -> None:
    supervisor = make(lake_roots=LakeRoots("/srv/dash/lake", ("/data", "s3://bucket/dash")))
    await supervisor.boot()
    for lake in ("memory://x", "/tmp/x", "/srv/dash/lake/silver/y", "s3://other/x"):
        with pytest.raises(SpecError) as caught:
            await supervisor.put(spec("custom", storage={"lake": lake}))
        assert caught.value.where == "storage.lake", lake
    assert place.stored("custom") is None and runtime.attempts == []
    await supervisor.put(spec("custom", storage={"lake": "/data/custom"}))
    await supervisor.put(spec("shared", storage={"lake": "/data/custom"}))  # the same lake is fine
    with pytest.raises(SpecError, match="overlaps"):
        await supervisor.put(spec("inner", storage={"lake": "/data/custom/inner"}))
    # Its own former lake does not count against a pipeline's update.
    await supervisor.put(spec("custom", storage={"lake": "/data/custom2"}))


async def test_put_of_a_spec_without_a_usable_id_names_every_problem(make, runtime: FakeRuntime) -> None:
    supervisor = await booted(make)
    for data, paths in (({**spec(), "id": 7, "hot_records": 0}, {"id", "hot_records"}),
                        ({k: v for k, v in spec().items() if k != "id"}, {"id"}),
                        (["not", "a", "spec"], {"(spec)"}),
                        ({**spec(), "id": "Bad_Id", "hot_records": 0}, {"id", "hot_records"})):
        with pytest.raises(SpecError) as caught:
            await supervisor.put(data)
        assert {p.path for p in caught.value.problems} == paths, data
    assert runtime.attempts == [] and await supervisor.list() == []


async def test_every_failure_inside_a_gather_is_logged_with_its_cause(make, runtime: FakeRuntime, place: Place,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    class Odd(BaseException):
        pass

    first = await booted(make)
    await first.put(spec("one"))
    await first.put(spec("two"))
    runtime.crash("one")
    runtime.crash("two")
    runtime.start_error["one"] = Odd("a failure no except clause expects")
    caplog.set_level(logging.ERROR)
    second = make()
    await second.boot()
    assert second.status("two") == "running"
    [record] = [r for r in caplog.records if "adoption of pipeline one failed" in r.getMessage()]
    assert "Odd: a failure no except clause expects" in record.getMessage() and record.exc_info


async def test_put_refuses_a_type_change_old_rows_cannot_take_and_bad_rollups(make, runtime: FakeRuntime) -> None:
    supervisor = await booted(make)
    await supervisor.put(spec())
    narrowed = spec()
    narrowed["mapping"]["fields"]["temp_c"] = {"path": "$.t", "type": "int"}
    with pytest.raises(SpecError) as caught:
        await supervisor.put(narrowed)
    assert [p.path for p in caught.value.problems] == ["mapping.fields.temp_c.type"]
    widened = spec()
    widened["mapping"]["fields"]["label"] = {"path": "$.l", "type": "string"}
    assert (await supervisor.put(widened)).pipeline.version == 2
    with pytest.raises(SpecError) as caught:
        await supervisor.put(spec("other", storage={"rollups": {"by": ["nope"]}}))
    assert [p.path for p in caught.value.problems] == ["storage.rollups.by.0"]
    cased = spec("other")
    cased["mapping"]["fields"]["Temp_C"] = {"path": "$.T", "type": "double"}
    with pytest.raises(SpecError) as caught:
        await supervisor.put(cased)
    assert [p.path for p in caught.value.problems] == ["mapping.fields.Temp_C"]
    assert runtime.starts("weather") == 2


async def test_pipelines_following_each_other_in_a_cycle_are_refused(make) -> None:
    supervisor = await booted(make)
    await supervisor.put(spec("a", source={"kind": "pipeline", "from": "b"}))  # b does not exist yet: it waits
    await supervisor.put(spec("c", source={"kind": "pipeline", "from": "a"}))
    for data in (spec("b", source={"kind": "pipeline", "from": "c"}),
                 spec("d", source={"kind": "pipeline", "from": "d"})):
        with pytest.raises(SpecError) as caught:
            await supervisor.put(data)
        [problem] = caught.value.problems
        assert problem.path == "source.from" and "cycle" in problem.message
    assert problem.message.endswith("d -> d")
    await supervisor.put(spec("b"))  # a push source closes no cycle
    assert sorted(supervisor.specs()) == ["a", "b", "c"]
