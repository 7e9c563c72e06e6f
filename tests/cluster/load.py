"""Ingest under load for the cluster tests and `benchmarks/cluster.py`: one thread per pipeline
sending signed batches of records `{"n": k}` (k counting up from 0, each sent once), keeping
which were acknowledged and when each request started and ended."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from dash_ray.client import Client


@dataclass
class Attempt:
    started: float
    ended: float
    ok: bool


@dataclass
class Load:
    url: str
    token: str
    pipeline_id: str
    secret: str
    size: int = 20
    acked: list[int] = field(default_factory=list)  # every `n` a 202 covered
    last_seq: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name=f"load:{self.pipeline_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "the load thread did not stop"

    def _run(self) -> None:
        n = 0
        with Client(self.url, token=self.token, timeout=5, retries=0) as client:
            while not self._stop.is_set():
                batch = list(range(n, n + self.size))
                n += self.size
                started = time.monotonic()
                try:
                    result = client.ingest(self.pipeline_id, [{"n": k} for k in batch], secret=self.secret)
                except Exception:  # noqa: BLE001 - refused or lost: not acknowledged, maybe stored
                    self.attempts.append(Attempt(started, time.monotonic(), False))
                    time.sleep(0.05)
                    continue
                self.attempts.append(Attempt(started, time.monotonic(), True))
                self.acked.extend(batch)
                self.last_seq = max(self.last_seq, result.last_seq or 0)

    def first_ok_after(self, moment: float) -> float | None:
        """When the first request started after `moment` was acknowledged (None: none yet)."""
        return next((a.ended for a in list(self.attempts) if a.ok and a.started >= moment), None)

    def records_per_s(self, since: float, until: float) -> float:
        """Acknowledged records per second over requests that started and ended in the window."""
        done = [a for a in list(self.attempts) if a.ok and a.started >= since and a.ended <= until]
        return len(done) * self.size / max(until - since, 1e-9)
