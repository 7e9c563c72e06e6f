"""Booting without Ray: a new supervisor adopts the healthy processes it finds and replaces
the others (one stopped but never killed because the registry died in between, one that
answers `closed`), and a catalog it cannot reach makes it retry with back-off while saying
why, instead of hanging."""

from __future__ import annotations

import asyncio

import pytest

from dash_ray.auth.secretbox import SecretBox
from dash_ray.errors import SecretKeyError, UnavailableError
from tests.dash_ray.supervision.conftest import FakeClock, FakeRuntime, Place, RegistryDied, spec, until_status
from tests.waiting import until


async def test_a_new_supervisor_adopts_healthy_processes(make, runtime: FakeRuntime, place: Place) -> None:
    first = make()
    await first.boot()
    await first.put(spec("one"))
    await first.put(spec("two"))
    processes = {pid: runtime.process(pid) for pid in ("one", "two")}
    # The registry dies (nothing of `first` runs any more); another one boots.
    second = make()
    await second.boot()
    await second.ready()
    assert [v.status for v in await second.list()] == ["running", "running"]
    assert {pid: runtime.process(pid) for pid in ("one", "two")} == processes  # adopted
    assert len(runtime.started) == 2 and runtime.killed == []


@pytest.mark.parametrize("answer", ["closed", "raises"])
async def test_a_process_that_cannot_take_ingest_is_replaced_not_adopted(make, runtime: FakeRuntime,
                                                                        answer: str) -> None:
    first = make()
    await first.boot()
    await first.put(spec())
    old = runtime.process("weather")
    if answer == "closed":
        old.state = "closed"  # what PipelineCore.health() answers once closed
    else:
        old.health_error = UnavailableError("pipeline weather is closed")
    second = make()
    await second.boot()
    assert second.status("weather") == "running"
    assert runtime.killed == [old] and runtime.process("weather") is not old


async def test_the_registry_dying_between_stop_and_kill_leaves_nothing_wedged(make, runtime: FakeRuntime) -> None:
    first = make()
    await first.boot()
    await first.put(spec())
    old = runtime.process("weather")
    runtime.die_after_close = True
    with pytest.raises(RegistryDied):
        await first.restart("weather")  # stopped (flushed and closed), never killed
    runtime.die_after_close = False
    assert old.alive and old.state == "closed" and runtime.process("weather") is old
    second = make()
    await second.boot()
    view = await second.get("weather")
    assert view.status == "running" and runtime.process("weather") is not old and not old.alive


async def test_an_unreachable_catalog_at_boot_is_retried_and_said(make, place: Place, clock: FakeClock,
                                                                  runtime: FakeRuntime) -> None:
    ready = make()
    await ready.boot()
    await ready.put(spec())
    runtime.crash("weather")
    place.unreachable = True
    supervisor = make()
    supervisor.start()
    await until(lambda: supervisor._boot_attempts == 1, what="the first boot attempt")
    with pytest.raises(UnavailableError, match=r"cannot boot: UnavailableError: catalog .* unreachable .*attempt 1"):
        await asyncio.wait_for(supervisor.ready(), 2)
    with pytest.raises(UnavailableError, match="not ready"):
        await asyncio.wait_for(supervisor.ready(wait_s=0.05), 2)  # waits a little, never hangs
    for call in (supervisor.put(spec()), supervisor.get("weather"), supervisor.list(),
                 supervisor.delete("weather"), supervisor.restart("weather")):
        with pytest.raises(UnavailableError):
            await asyncio.wait_for(call, 2)
    assert clock.sleeping() == [0.5]  # the next attempt
    await clock.advance(0.5)
    await until(lambda: clock.sleeping() == [1.5], what="the second attempt, backing off")
    # Opened, but the first read fails: the open catalog is kept and read again.
    place.unreachable = False
    await clock.advance(1.0)
    await until(lambda: supervisor._boot_error is None, what="the boot")
    await supervisor.ready()
    assert supervisor.status("weather") == "running" and runtime.starts("weather") == 2
    await supervisor.shutdown()
    assert supervisor.status("weather") == "stopped"


async def test_a_catalog_read_failing_at_boot_is_retried(make, place: Place, clock: FakeClock) -> None:
    supervisor = make()
    supervisor._catalog = place.open()
    place.backend.down = True
    supervisor.start()
    await until(lambda: supervisor._boot_attempts == 1, what="the first boot attempt")
    with pytest.raises(UnavailableError, match="disk I/O error"):
        await asyncio.wait_for(supervisor.ready(), 2)
    assert clock.sleeping() == [0.5]
    place.backend.down = False
    await clock.advance(0.5)
    await supervisor.ready(wait_s=2)
    await supervisor.shutdown()


async def test_a_wrong_key_at_boot_is_the_operator_error_itself(make, place: Place) -> None:
    first = make()
    await first.boot()
    await first.put(spec())
    place.key = SecretBox.generate_key()
    supervisor = make()
    supervisor.start()
    with pytest.raises(SecretKeyError):
        await supervisor.ready(wait_s=0.5)
    await supervisor.shutdown()


async def test_failed_pipelines_are_not_started_at_boot(make, runtime: FakeRuntime, clock: FakeClock) -> None:
    first = make()
    await first.boot()
    runtime.start_error["weather"] = OSError("cannot start")
    await first.put(spec())
    for attempt, delay in enumerate((1, 2, 4), start=2):
        await clock.advance(delay)
        await until(lambda: len(runtime.attempts) == attempt, what=f"attempt {attempt}")
    await until_status(first, "weather", "failed", what="giving up")
    second = make()
    await second.boot()
    assert second.status("weather") == "failed" and len(runtime.attempts) == 4
