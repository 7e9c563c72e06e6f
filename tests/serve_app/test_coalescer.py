import asyncio

from dash_ray.errors import BackpressureError, SpecError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from serve_app.coalescer import Coalescer
from tests.waiting import until


def batch(n=1):
    return RawBatch(b"{}\n" * n, n, 0)


class Actor:
    def __init__(self, delay=0.01, fail=None):
        self.calls = []
        self.delay = delay
        self.fail = fail
        self.seq = 0

    async def __call__(self, batches):
        self.calls.append(len(batches))
        await asyncio.sleep(self.delay)  # the pipeline's time for a call, not a wait
        if self.fail:
            raise self.fail
        out = []
        for b in batches:
            out.append(Ack(b.count, self.seq + 1, self.seq + b.count))
            self.seq += b.count
        return out


async def test_idle_request_goes_at_once_and_busy_ones_are_gathered():
    actor = Actor()
    coalescer = Coalescer(actor, max_inflight=1)
    first = await coalescer.submit(batch())
    assert actor.calls == [1] and first.first_seq == 1
    results = await asyncio.gather(*(coalescer.submit(batch()) for _ in range(50)))
    assert sum(actor.calls) == 51 and len(actor.calls) <= 3
    seqs = sorted(r.first_seq for r in results)
    assert seqs == list(range(2, 52))


async def test_respects_max_inflight():
    running = 0
    peak = 0

    async def call(batches):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)  # the pipeline's time for a call, not a wait
        running -= 1
        return [Ack(1, 1, 1)] * len(batches)

    coalescer = Coalescer(call, max_inflight=2)

    async def producer(i):
        await asyncio.sleep(i * 0.0005)  # arrivals spread out, as real clients are
        for _ in range(5):
            await coalescer.submit(batch())

    await asyncio.gather(*(producer(i) for i in range(50)))
    assert peak == 2


async def test_call_size_is_bounded():
    actor = Actor()
    coalescer = Coalescer(actor, max_inflight=1, max_call_records=10)
    await asyncio.gather(*(coalescer.submit(batch(4)) for _ in range(10)))
    assert max(actor.calls) <= 3


async def test_waiting_queue_is_bounded():
    actor = Actor(delay=0.05)
    coalescer = Coalescer(actor, max_inflight=1, max_waiting_records=10)
    results = await asyncio.gather(*(coalescer.submit(batch(3)) for _ in range(10)))
    refused = [r for r in results if isinstance(r, BackpressureError)]
    assert refused and all(r.status == 429 for r in refused)
    assert sum(isinstance(r, Ack) for r in results) + len(refused) == 10


async def test_transport_failure_is_503_for_every_request_and_reported():
    seen = []
    coalescer = Coalescer(Actor(fail=ConnectionError("gone")), on_transport_error=seen.append)
    results = await asyncio.gather(*(coalescer.submit(batch()) for _ in range(3)))
    assert all(isinstance(r, UnavailableError) for r in results) and seen


async def test_a_dash_error_from_the_call_is_passed_through():
    coalescer = Coalescer(Actor(fail=SpecError("bad")))
    assert isinstance(await coalescer.submit(batch()), SpecError)


# -- bytes, not only records (issue 21, item 14) -------------------------------------------------

MiB = 2**20


def big(n_bytes: int) -> RawBatch:
    """One record of about `n_bytes`."""
    return RawBatch(b'{"x": "' + b"a" * (n_bytes - 10) + b'"}\n', 1, 0)


class Held:
    """A pipeline that holds every call until `gate` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0

    async def __call__(self, batches):
        self.calls += 1
        await self.gate.wait()
        return [Ack(b.count, 1, b.count) for b in batches]


async def test_the_bytes_waiting_are_bounded_not_only_the_records():
    """A few records of a megabyte each pass no record bound; the bytes waiting are bounded
    (64 MiB by default): past that a request gets 429 at once."""
    from serve_app.coalescer import MAX_WAITING_BYTES

    pipeline = Held()
    coalescer = Coalescer(pipeline, max_inflight=1)
    first = asyncio.create_task(coalescer.submit(big(MiB)))  # in flight, held
    await until(lambda: pipeline.calls == 1, what="the first request in flight")
    tasks = [asyncio.create_task(coalescer.submit(big(MiB))) for _ in range(100)]
    await until(lambda: coalescer.waiting + sum(t.done() for t in tasks) == 100,
                what="every request waiting or refused")
    assert coalescer.waiting_bytes <= MAX_WAITING_BYTES
    pipeline.gate.set()
    results = await asyncio.gather(first, *tasks)
    refused = [r for r in results if isinstance(r, BackpressureError)]
    assert refused and all(r.status == 429 and "bytes" in r.message for r in refused)
    assert len(results) - len(refused) <= MAX_WAITING_BYTES // MiB + 1


async def test_a_replica_bounds_the_bytes_waiting_across_its_pipelines():
    from serve_app.coalescer import WaitingBytes

    shared = WaitingBytes(8 * MiB)
    held = [Held() for _ in range(4)]
    coalescers = [Coalescer(p, max_inflight=1, max_waiting_bytes=64 * MiB, shared=shared) for p in held]
    first = [asyncio.create_task(c.submit(big(MiB))) for c in coalescers]
    await until(lambda: all(p.calls == 1 for p in held), what="a request in flight for each pipeline")
    tasks = [asyncio.create_task(c.submit(big(MiB))) for c in coalescers for _ in range(5)]
    await until(lambda: sum(c.waiting for c in coalescers) + sum(t.done() for t in tasks) == 20,
                what="every request waiting or refused")
    assert shared.used <= 8 * MiB
    for p in held:
        p.gate.set()
    results = await asyncio.gather(*first, *tasks)
    assert sum(isinstance(r, BackpressureError) for r in results) == 20 - 8
    assert shared.used == 0


async def test_a_request_larger_than_the_bound_still_goes_when_nothing_waits():
    coalescer = Coalescer(Actor(delay=0), max_waiting_bytes=MiB)
    assert isinstance(await coalescer.submit(big(2 * MiB)), Ack)
