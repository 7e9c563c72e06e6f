"""What the supervisor tests run on, without Ray: a runtime of in-memory processes the test
controls, a clock the test moves, and a real SQLite catalog in tmp_path (behind a backend
the test can take down)."""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog import Catalog, PipelineRecord
from dash_ray.catalog.sqlite import SqliteBackend
from dash_ray.errors import UnavailableError
from dash_ray.settings import RestartPolicy
from dash_ray.spec import PipelineSpec
from dash_ray.supervision.runtime import Health
from dash_ray.supervision.supervisor import Supervisor
from tests.waiting import until

T0 = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
POLICY = RestartPolicy(max_restarts=3, window_s=60, backoff_s=1, max_backoff_s=4, crash_loop_max_backoff_s=30)


class FakeClock:
    """Time moves only when the test calls `advance`; sleepers wake in time order."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.t

    def now(self) -> dt.datetime:
        return T0 + dt.timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), future))
        await future

    def sleeping(self) -> list[float]:
        """When each pending sleeper wakes."""
        return sorted(due for due, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        target = self.t + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, due)
            if not future.done():
                future.set_result(None)
                await settle()
        self.t = target
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def until_status(supervisor: Supervisor, pipeline_id: str, status: str, *, what: str = "") -> None:
    """Wait until the pipeline has `status` and nothing holds its lock any more (a health
    round skips a pipeline while something is being done to it)."""
    await until(lambda: supervisor.status(pipeline_id) == status and not supervisor._locks.busy(pipeline_id),
                     what=what or f"{pipeline_id} to be {status}")


class ActorDied(Exception):
    """What the fake runtime raises for a process that is gone (Ray: ActorDiedError)."""


class RegistryDied(BaseException):
    """Raised through a supervisor call to stand for the registry's process dying there."""


@dataclass(eq=False)
class FakeProcess:
    spec: PipelineSpec
    state: str = "running"
    alive: bool = True
    counters: dict[str, Any] = field(default_factory=dict)
    health_error: BaseException | None = None
    hang: bool = False

    @property
    def id(self) -> str:
        return self.spec.id


class FakeRuntime:
    """Named in-memory processes, as Ray keeps named actors: one live process per id."""

    def __init__(self) -> None:
        self.live: dict[str, FakeProcess] = {}
        self.started: list[FakeProcess] = []
        self.killed: list[FakeProcess] = []
        self.closed: list[FakeProcess] = []
        self.start_error: dict[str, BaseException] = {}
        self.attempts: list[str] = []
        self.start_gate: asyncio.Event | None = None
        self.die_after_close = False

    def process(self, pipeline_id: str) -> FakeProcess:
        return self.live[pipeline_id]

    def crash(self, pipeline_id: str) -> FakeProcess:
        """SIGKILL the pipeline's process."""
        process = self.live.pop(pipeline_id)
        process.alive = False
        return process

    def starts(self, pipeline_id: str) -> int:
        return sum(1 for p in self.started if p.id == pipeline_id)

    async def find(self, pipeline_id: str) -> FakeProcess | None:
        return self.live.get(pipeline_id)

    async def start(self, spec: PipelineSpec) -> tuple[FakeProcess, Health]:
        self.attempts.append(spec.id)
        if self.start_gate is not None:
            await self.start_gate.wait()
        await asyncio.sleep(0)
        if spec.id in self.live:
            raise ValueError(f"the name pipeline:{spec.id} is taken")
        if spec.id in self.start_error:
            raise self.start_error[spec.id]
        process = FakeProcess(spec, counters={"last_seq": 0, "stored_seq": 0})
        self.live[spec.id] = process
        self.started.append(process)
        return process, Health("running", dict(process.counters))

    async def health(self, process: FakeProcess) -> Health:
        await asyncio.sleep(0)
        if not process.alive:
            raise ActorDied(f"the actor of {process.id} died")
        if process.hang:
            await asyncio.Event().wait()
        if process.health_error is not None:
            raise process.health_error
        return Health(process.state, dict(process.counters))

    async def stop(self, process: FakeProcess, *, graceful: bool) -> None:
        await asyncio.sleep(0)
        if graceful and process.alive:
            process.state = "closed"
            self.closed.append(process)
            if self.die_after_close:
                raise RegistryDied("the registry died between stop and kill")
        if process.alive:
            process.alive = False
            self.killed.append(process)
        if self.live.get(process.id) is process:
            del self.live[process.id]


class FlakyBackend:
    """A real SQLite backend that answers UnavailableError while `down`."""

    def __init__(self, inner: SqliteBackend) -> None:
        self.inner = inner
        self.migrations = inner.migrations
        self.down = False
        self.refused = 0

    def run(self, work: Any, *, exclusive: bool = False) -> Any:
        if self.down:
            self.refused += 1
            raise UnavailableError(f"catalog {self.inner!r}: disk I/O error (test)")
        return self.inner.run(work, exclusive=exclusive)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Place:
    """A catalog file and the key it is sealed with; opens it behind a FlakyBackend."""

    path: Path
    key: str = field(default_factory=SecretBox.generate_key)
    backends: list[FlakyBackend] = field(default_factory=list)
    unreachable: bool = False

    def open(self) -> Catalog:
        if self.unreachable:
            raise UnavailableError(f"catalog sqlite:{self.path} unreachable (test)")
        backend = FlakyBackend(SqliteBackend(self.path))
        self.backends.append(backend)
        return Catalog(backend, box=SecretBox([self.key]))

    @property
    def backend(self) -> FlakyBackend:
        return self.backends[-1]

    def stored(self, pipeline_id: str) -> PipelineRecord | None:
        """What the catalog file holds, read over a connection of its own."""
        catalog = Catalog(SqliteBackend(self.path), box=SecretBox([self.key]))
        try:
            return catalog.get_pipeline(pipeline_id)
        finally:
            catalog.close()


@pytest.fixture()
def place(tmp_path: Path) -> Place:
    return Place(tmp_path / "home" / "catalog.sqlite")


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture()
def make(place: Place, runtime: FakeRuntime, clock: FakeClock) -> Iterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def make(**options: Any) -> Supervisor:
        values: dict[str, Any] = {"policy": POLICY, "clock": clock, "health_timeout_s": 0.2,
                                  "fresh_health_timeout_s": 0.2}
        chosen = options.pop("runtime", runtime)
        values.update(options)
        supervisor = Supervisor(place.open, chosen, **values)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        if supervisor._catalog is not None:
            supervisor._catalog.close()


def spec(pipeline_id: str = "weather", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": pipeline_id,
        "source": {"kind": "push"},
        "mapping": {"fields": {"temp_c": {"path": "$.t", "type": "double"},
                               "feels_f": {"expr": "temp_c * 9 / 5 + 32", "type": "double"}}},
    }
    data.update(changes)
    return data
