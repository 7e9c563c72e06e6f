"""The chaos soak of issue 13: every acknowledged record is stored exactly once while the
pipeline actor is SIGKILLed every 2-5 s and, once, the whole Ray instance is SIGKILLed and
brought back up on the same home.

Five writers send signed NDJSON batches, each record with a unique id, each batch with an
Idempotency-Key; a batch is sent again with the same key (re-signed on every other attempt,
so the key alone must deduplicate) until it is acknowledged. The pipeline flushes every 50
records or 50 ms, so kills land inside commits. At the end, once the pipeline has stored all
it acknowledged, bronze (the raw records), silver (the lake's Parquet) and the query API must
each hold every acknowledged record exactly once, at the sequence numbers its ack gave, and
no record that was sent but never acknowledged more than once.

`DASH_SOAK_SECONDS` sets how long the chaos lasts (default 60), `DASH_SOAK_SEED` the seed
of the kill times and batch sizes (printed, to run a failure again).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import ray

from dash_ray.client import Client
from dash_ray.deploy.localray import _stragglers, read_run_file
from dash_ray.ingest.signing import signature_header
from dash_ray.lake import Lake
from dash_ray.settings import RestartPolicy
from tests.conftest import ADMIN_TOKEN, platform_settings, port_open, processes_using
from tests.waiting import wait_for

SOAK_S = float(os.environ.get("DASH_SOAK_SECONDS", "60"))
SEED = int(os.environ.get("DASH_SOAK_SEED", str(int(time.time()) % 100_000)))
WRITERS = 5
KILL_EVERY_S = (2.0, 5.0)
PIPELINE = "chaos"
SPEC = {
    "id": PIPELINE,
    "source": {"kind": "push"},
    "mapping": {"fields": {"id": {"path": "$.id", "type": "string", "required": True},
                           "w": {"path": "$.w", "type": "int"},
                           "b": {"path": "$.b", "type": "int"}}},
    "flush": {"records": 50, "seconds": 0.05},
}
# How long a writer keeps retrying its last batch once the chaos is over.
DRAIN_S = 60.0
# The chance that a writer gives up on a batch after a second refused attempt, so some
# records were sent (perhaps stored) but never acknowledged.
ABANDON = 0.1

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(int(SOAK_S) + 300)]


# -- the instance under test ------------------------------------------------------------------


class Instance:
    """The platform on a local Ray of its own, which the soak may SIGKILL whole and bring back
    on the same home. This process is a Ray driver of it while it runs (to find the pipeline
    actor's pid), and lets go of it before the instance is killed."""

    def __init__(self, home: Path) -> None:
        # Many restarts in the window, short back-off: the soak measures durability, not the
        # crash-loop back-off (tests/dash_ray/supervision cover that).
        policy = RestartPolicy(max_restarts=1000, window_s=60, backoff_s=0.1, max_backoff_s=0.5)
        self.settings = platform_settings(home, restart=policy)
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.temp_dirs: set[str] = set()
        self.port_waits: list[list[str]] = []  # who held the port when `up` found it taken

    def up(self) -> None:
        from serve_app.startup import up

        # The port is in the ephemeral range: once the killed instance let go of it, another
        # process's outgoing connection may hold it a moment (none of ours is left: see
        # kill_everything). Wait a little for it, saying who holds it.
        deadline = time.monotonic() + 30
        while True:
            try:
                up(self.settings, timeout_s=180)
                break
            except RuntimeError as exc:
                sockets = subprocess.run(["ss", "-tanpo"], capture_output=True, text=True).stdout
                held = [line for line in sockets.splitlines() if f":{self.settings.port} " in line]
                if "cannot listen" not in str(exc) or time.monotonic() > deadline:
                    raise AssertionError(f"{exc}; sockets on the port: {held}") from exc
                self.port_waits.append(held)
                time.sleep(1.0)
        local = read_run_file(self.settings.home)
        assert local is not None
        self.temp_dirs.add(local.temp_dir)

    def down(self) -> None:
        from serve_app.startup import down

        down(self.settings)

    def kill_pipeline(self) -> bool:
        """SIGKILL the pipeline actor's process, its pid asked of the actor; False while it is
        not there or does not answer (it is being restarted)."""
        try:
            actor = ray.get_actor(f"pipeline:{PIPELINE}", namespace=self.settings.namespace)
            pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=3)
            # The pid was the actor's an instant ago; make sure it still is.
            if b"PipelineActor" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return False
            os.kill(pid, signal.SIGKILL)
        except Exception:  # noqa: BLE001 - gone, dead or busy restarting: try again later
            return False
        return True

    def kill_everything(self) -> None:
        """What a power cut does to the instance: every process of it dies at once (its process
        group, then any process still holding its temp folder)."""
        ray.shutdown()  # this driver is not part of the instance; let go before it dies
        local = read_run_file(self.settings.home)
        assert local is not None and local.alive()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(local.pid, signal.SIGKILL)
        def none_left() -> bool:
            left = _stragglers(local.temp_dir, local.pid)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            assert not left, f"instance processes survive SIGKILL: {left}"
            return True

        wait_for(none_left, timeout=30, every=0.1, what="every process of the instance to die")
        with contextlib.suppress(ChildProcessError):
            os.waitpid(local.pid, os.WNOHANG)


@pytest.fixture()
def instance(tmp_path: Path) -> Iterator[Instance]:
    # Another test of this session may have this process connected to the session's
    # platform: let go of it for the soak and connect back afterwards.
    previous = None
    if ray.is_initialized():
        context = ray.get_runtime_context()
        previous = (context.gcs_address, context.namespace)
        ray.shutdown()
    inst = Instance(tmp_path / "home")
    inst.up()
    try:
        yield inst
    finally:
        inst.down()
        if ray.is_initialized():
            ray.shutdown()
        assert not port_open(inst.settings.port), "the web port is still open"
        for temp_dir in inst.temp_dirs:
            assert not processes_using(temp_dir), processes_using(temp_dir)
            assert not Path(temp_dir).exists(), f"{temp_dir} left behind"
        if previous is not None:
            from serve_app.startup import connect_ray

            connect_ray(*previous)


# -- the writers ------------------------------------------------------------------------------


@dataclasses.dataclass
class Ledger:
    """What the writers sent and what was acknowledged, at which sequence numbers."""

    sent: set[str] = dataclasses.field(default_factory=set)
    acked: dict[str, int] = dataclasses.field(default_factory=dict)  # record id -> its seq
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    duplicates: int = 0
    retries: int = 0
    abandoned: int = 0
    # Writers stop retrying at this time (set when the chaos is over).
    deadline: float = math.inf
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class Writer(threading.Thread):
    """Sends batches until `stop`, each until it is acknowledged (or abandoned, or the
    ledger's deadline passes), recording them in the ledger."""

    def __init__(self, no: int, url: str, secret: str, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(name=f"writer-{no}", daemon=True)
        self.no, self.secret, self.ledger, self.stop = no, secret, ledger, stop
        self.url = f"{url}/v1/pipelines/{PIPELINE}/events"
        self.random = random.Random(SEED * 10 + no)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=10) as http:
                batch = 0
                while not self.stop.is_set():
                    self._send(http, batch)
                    batch += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _send(self, http: httpx.Client, batch: int) -> None:
        ids = [f"w{self.no}-{batch}-{i}" for i in range(self.random.randint(1, 30))]
        body = b"".join(orjson.dumps({"id": i, "w": self.no, "b": batch}) + b"\n" for i in ids)
        key = f"w{self.no}-b{batch}"
        with self.ledger.lock:
            self.ledger.sent.update(ids)
        signature = signature_header(self.secret, body)
        attempt = 0
        while time.monotonic() < self.ledger.deadline:
            if attempt % 2:
                signature = signature_header(self.secret, body)
            attempt += 1
            headers = {"content-type": "application/x-ndjson", "idempotency-key": key,
                       "dash-signature": signature}
            try:
                response = http.post(self.url, content=body, headers=headers)
                status = response.status_code
            except httpx.TransportError:
                status = 0
            with self.ledger.lock:
                self.ledger.statuses[status] += 1
                if attempt > 1:
                    self.ledger.retries += 1
            if status == 202:
                answer = response.json()
                assert answer["accepted"] == len(ids), answer
                first = answer["last_seq"] - len(ids) + 1
                with self.ledger.lock:
                    self.ledger.acked.update((i, first + n) for n, i in enumerate(ids))
                    self.ledger.duplicates += bool(answer.get("duplicate"))
                return
            assert status in (0, 404, 429, 500, 502, 503, 504), f"{status}: {response.text}"
            if attempt >= 2 and self.random.random() < ABANDON:
                with self.ledger.lock:
                    self.ledger.abandoned += 1
                return  # this client gives up: the batch may be stored, but at most once
            # Capped exponential back-off with jitter, as a client should (and so a writer
            # does not spin against a closed port while the instance comes back).
            time.sleep(min(1.0, 0.05 * 2 ** min(attempt, 5)) * (0.5 + self.random.random()))


# -- reading back what was stored ---------------------------------------------------------------


def stored_records(lake: Lake, area: str) -> list[tuple[str, int]]:
    """(record id, seq) of every record in the files readers use of `area`: bronze keeps the
    raw JSON line, silver the mapped `id` column."""
    found = []
    for file in lake.files(area, PIPELINE):
        column = "raw" if area == "bronze" else "id"
        table = lake.read_file(file, columns=["seq", column])
        ids = table.column(column).to_pylist()
        found += zip([orjson.loads(i)["id"] for i in ids] if area == "bronze" else ids, table.column("seq").to_pylist(),
                     strict=True)
    return found


def check_exactly_once(where: str, stored: list[tuple[str, int]], ledger: Ledger) -> list[str]:
    """Problems with `stored` against the ledger: an acknowledged record missing, stored twice
    or at another seq than its ack's; any sent record stored twice or never sent."""
    problems = []
    counts = collections.Counter(i for i, _ in stored)
    seqs = {i: s for i, s in stored}
    missing = sorted(set(ledger.acked) - set(counts))
    if missing:
        problems.append(f"{where}: {len(missing)} acknowledged record(s) lost, e.g. {missing[:10]}")
    doubled = sorted(i for i, n in counts.items() if n > 1)
    if doubled:
        problems.append(f"{where}: {len(doubled)} record(s) stored more than once, e.g. {doubled[:10]}")
    moved = sorted(i for i, s in ledger.acked.items() if i in seqs and counts[i] == 1 and seqs[i] != s)
    if moved:
        problems.append(f"{where}: {len(moved)} record(s) stored at another seq than acked, e.g. "
                        f"{[(i, ledger.acked[i], seqs[i]) for i in moved[:5]]}")
    unknown = sorted(set(counts) - ledger.sent)
    if unknown:
        problems.append(f"{where}: {len(unknown)} record(s) never sent, e.g. {unknown[:10]}")
    seq_counts = collections.Counter(s for _, s in stored)
    if reused := sorted(s for s, n in seq_counts.items() if n > 1):
        problems.append(f"{where}: {len(reused)} seq(s) used twice, e.g. {reused[:10]}")
    return problems


def wait_stored(client: Client, last_seq: int, timeout: float = 120) -> dict[str, Any]:
    """Until the pipeline runs and has stored everything through `last_seq`."""

    def stored() -> dict[str, Any]:
        view = client.get(PIPELINE)
        counters = view.counters
        # Not yet: the error says where it stands (wait_for reports the last one).
        assert view.status == "running" and counters.get("stored_seq", 0) >= last_seq, (view.status, counters)
        assert counters.get("stored_seq") == counters.get("last_seq"), (view.status, counters)
        return counters

    return wait_for(stored, timeout=timeout, every=0.5, what=f"the pipeline to store everything through seq {last_seq}")


# -- the soak ---------------------------------------------------------------------------------


def _chaos(instance: Instance, writers: list[Writer], started: float,
           rng: random.Random) -> tuple[int, int, float]:
    """SOAK_S seconds of chaos while the instance is up (the time it takes to come back after
    the power cut is not counted: on a loaded machine it can take longer than the rest).
    Returns the pipeline kills, the tries that found it restarting, and how long the instance
    took to come back."""
    kills = misses = restarts = 0
    restart_s = 0.0
    end = started + SOAK_S
    power_cut_at = started + SOAK_S * rng.uniform(0.3, 0.6)
    next_kill = started + rng.uniform(*KILL_EVERY_S)
    while (now := time.monotonic()) < end:
        assert all(w.is_alive() for w in writers), [w.error for w in writers if w.error]
        if not restarts and now >= power_cut_at:
            instance.kill_everything()
            instance.up()
            restart_s = time.monotonic() - now
            end += restart_s
            restarts += 1
            next_kill = time.monotonic() + rng.uniform(*KILL_EVERY_S)
        elif now >= next_kill:
            if instance.kill_pipeline():
                kills += 1
                next_kill = now + rng.uniform(*KILL_EVERY_S)
            else:
                misses += 1  # restarting still: try again shortly
                next_kill = now + 0.5
        time.sleep(0.05)  # the chaos schedule's tick, not a wait
    assert restarts == 1
    return kills, misses, restart_s


def test_chaos_soak_stores_every_acknowledged_record_exactly_once(instance: Instance) -> None:
    with Client(instance.url, token=ADMIN_TOKEN) as client:
        secret = client.deploy(SPEC).ingest_secret
    assert secret

    ledger = Ledger()
    stop = threading.Event()
    writers = [Writer(n, instance.url, secret, ledger, stop) for n in range(WRITERS)]
    started = time.monotonic()
    for writer in writers:
        writer.start()
    try:
        kills, misses, restart_s = _chaos(instance, writers, started, random.Random(SEED))
    except BaseException:
        ledger.deadline = 0.0  # the chaos failed: writers give up at once, before the teardown
        raise
    finally:
        stop.set()
    ledger.deadline = time.monotonic() + DRAIN_S
    chaos_s = time.monotonic() - started
    for writer in writers:
        writer.join(DRAIN_S + 15)
    assert not any(w.is_alive() for w in writers), "a writer did not stop"
    errors = [w.error for w in writers if w.error]
    assert not errors, errors

    with Client(instance.url, token=ADMIN_TOKEN) as client:
        last_acked = max(ledger.acked.values(), default=0)
        counters = wait_stored(client, last_acked)
        query_rows = [(r["id"], r["seq"]) for page in client.query_pages(PIPELINE, limit=10_000, fields="id")
                      for r in page]
    lake = Lake.from_url(instance.settings.lake_url)
    bronze, silver = stored_records(lake, "bronze"), stored_records(lake, "silver")
    dead = sum(lake.read_file(f, columns=["seq"]).num_rows for f in lake.files("dead", PIPELINE))
    problems = (check_exactly_once("bronze", bronze, ledger) + check_exactly_once("silver", silver, ledger)
                + check_exactly_once("query", query_rows, ledger))
    if dead:
        problems.append(f"{dead} record(s) dead-lettered, though every record sent is valid")

    unacked = len(ledger.sent) - len(ledger.acked)
    print(f"\nchaos soak (seed {SEED}): {len(ledger.acked)} records acknowledged "
          f"({unacked} sent in {ledger.abandoned} abandoned batches, never acknowledged, "
          f"{len(set(i for i, _ in bronze) - set(ledger.acked))} of them stored; "
          f"{ledger.duplicates} duplicate answers), "
          f"{kills} pipeline kills ({misses} tries found it restarting), 1 instance "
          f"restart ({restart_s:.1f} s to come back), {chaos_s:.0f} s of chaos; "
          f"bronze {len(bronze)} rows, silver {len(silver)}, query {len(query_rows)}; "
          f"stored_seq {counters.get('stored_seq')}; answers {dict(ledger.statuses)}; "
          f"{ledger.retries} retries; port taken at restart: {instance.port_waits or 'no'}")
    assert not problems, "\n".join(problems)
    assert kills >= 1 and ledger.acked
    # Every seq the pipeline gave out is accounted for: bronze holds one record per seq.
    assert sorted(s for _, s in bronze) == list(range(1, counters["stored_seq"] + 1))
