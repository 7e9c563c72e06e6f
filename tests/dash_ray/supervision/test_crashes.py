"""Crashes without Ray: a failed health check restarts with back-off; a spec that cannot start
is given up; a pipeline that crashes again and again after it ran is retried forever with a
capped back-off; a catalog error while a crash is handled delays only the catalog's record."""

from __future__ import annotations

import datetime as dt

import pytest

from dash_ray.errors import UnavailableError
from dash_ray.supervision.supervisor import Supervisor
from tests.dash_ray.supervision.conftest import FakeClock, FakeRuntime, Place, spec, until_status
from tests.waiting import until


async def running(make) -> Supervisor:
    supervisor = make()
    await supervisor.boot()
    await supervisor.put(spec())
    return supervisor


async def crash_and_wait(supervisor: Supervisor, runtime: FakeRuntime, clock: FakeClock) -> float:
    """SIGKILL the pipeline, let a health round see it; returns the back-off it was given."""
    runtime.crash("weather")
    await supervisor.check()
    view = await supervisor.get("weather")
    assert view.status == "restarting" and view.next_restart_at is not None
    delay = (view.next_restart_at - clock.now()).total_seconds()
    await clock.advance(delay)
    await until_status(supervisor, "weather", "running", what="the restart")
    return delay


async def test_a_failed_health_check_restarts_with_back_off(make, runtime: FakeRuntime, clock: FakeClock,
                                                            place: Place) -> None:
    supervisor = await running(make)
    first = runtime.process("weather")
    first.counters.update(last_seq=10, stored_seq=4)
    await supervisor.check()  # a health answer: 6 records wait in the log
    runtime.crash("weather")
    await supervisor.check()
    view = await supervisor.get("weather")
    assert view.status == "restarting" and view.restarts == 1 and "ActorDied" in (view.last_error or "")
    assert view.next_restart_at == clock.now() + dt.timedelta(seconds=1) and view.waiting_in_log == 6
    assert place.stored("weather").status == "restarting"  # type: ignore[union-attr]
    await clock.advance(0.9)
    assert runtime.starts("weather") == 1  # not before its time
    await clock.advance(0.1)
    await until_status(supervisor, "weather", "running", what="the restart")
    assert runtime.process("weather") is not first and place.stored("weather").status == "running"  # type: ignore[union-attr]
    assert await crash_and_wait(supervisor, runtime, clock) == 2  # the second restart waits longer


@pytest.mark.parametrize("answer", ["closing", "closed", "raises"])
async def test_a_pipeline_that_is_not_running_is_a_crash(make, runtime: FakeRuntime, answer: str) -> None:
    supervisor = await running(make)
    process = runtime.process("weather")
    if answer == "raises":
        process.health_error = UnavailableError("pipeline weather is closed")
    else:
        process.state = answer
    await supervisor.check()
    assert supervisor.status("weather") == "restarting" and runtime.killed == [process]


async def test_missed_health_answers_are_a_crash_at_the_third(make, runtime: FakeRuntime) -> None:
    supervisor = await running(make)
    runtime.process("weather").hang = True
    for _ in range(2):
        await supervisor.check()
        assert supervisor.status("weather") == "running"
    await supervisor.check()
    view = await supervisor.get("weather")
    assert view.status == "restarting" and "no health answer" in (view.last_error or "")


async def test_a_spec_that_cannot_start_is_given_up_and_stays_failed(make, runtime: FakeRuntime,
                                                                     clock: FakeClock, place: Place) -> None:
    supervisor = make()
    await supervisor.boot()
    runtime.start_error["weather"] = OSError("lake /dev/null/lake is not usable")
    deployed = await supervisor.put(spec())
    assert deployed.created and deployed.pipeline.status == "restarting"
    for attempt, delay in enumerate((1, 2, 4), start=2):
        assert clock.sleeping()[-1] == clock.t + delay
        await clock.advance(delay)
        await until(lambda: len(runtime.attempts) == attempt, what=f"attempt {attempt}")
    await until_status(supervisor, "weather", "failed", what="giving up")
    view = await supervisor.get("weather")
    assert view.restarts == 3 and "not usable" in (view.last_error or "") and view.next_restart_at is None
    await clock.advance(3600)
    await supervisor.check()
    assert len(runtime.attempts) == 4 and supervisor.status("weather") == "failed"
    assert place.stored("weather").status == "failed"  # type: ignore[union-attr]


async def test_a_crash_loop_after_running_is_retried_forever_with_capped_back_off(
        make, runtime: FakeRuntime, clock: FakeClock) -> None:
    supervisor = await running(make)
    delays = [await crash_and_wait(supervisor, runtime, clock) for _ in range(9)]
    # Three restarts in the window (1, 2, 4 s), then the crash loop: doubling from the
    # policy's max_backoff_s (4 s) to crash_loop_max_backoff_s (30 s), never `failed`.
    assert delays == [1, 2, 4, 4, 8, 16, 30, 30, 30]
    view = await supervisor.get("weather")
    assert view.status == "running" and view.restarts == 9
    # Once it has run healthy for the window, a crash starts again from the shortest back-off.
    for _ in range(6):
        await clock.advance(10)
        await supervisor.check()
    assert await crash_and_wait(supervisor, runtime, clock) == 1


async def test_a_catalog_error_while_a_crash_is_handled_still_restarts(make, runtime: FakeRuntime,
                                                                       clock: FakeClock, place: Place) -> None:
    supervisor = await running(make)
    place.backend.down = True
    runtime.crash("weather")
    await supervisor.check()
    assert supervisor.status("weather") == "restarting" and place.backend.refused >= 1
    assert clock.sleeping() == [clock.t + 1]  # the restart is scheduled all the same
    assert place.stored("weather").status == "running"  # type: ignore[union-attr]  # not written yet
    await clock.advance(1)
    await until_status(supervisor, "weather", "running", what="the restart")
    runtime.crash("weather")
    await supervisor.check()  # still down: restarting again, in memory only
    assert supervisor.status("weather") == "restarting"
    place.backend.down = False
    await supervisor.check()  # the next round writes what the catalog missed
    stored = place.stored("weather")
    assert stored is not None and (stored.status, stored.restarts) == ("restarting", 2)
    assert "ActorDied" in (stored.last_error or "")
    await clock.advance(2)
    await until(lambda: place.stored("weather").status == "running", what="running in the catalog")  # type: ignore[union-attr]
