"""How a sink treats a destination that fails: the retry schedule (`Retries`: the delay before
each attempt, with jitter, and `Retry-After` honoured) and the circuit breaker (`Breaker`:
closed, open after N failures in a row, half-open to let one try through). Plain objects with
an injected clock and random source, so they are tested without waiting."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from dash_ray.spec.sinks import RetrySpec

__all__ = ["Breaker", "BreakerState", "Retries"]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class Retries:
    """`delay(n)`: how long to wait after the n-th failed attempt (1-based) before the next,
    None when the n-th was the last (the delivery is dead)."""

    spec: RetrySpec
    rand: Callable[[], float] = field(default=random.random, compare=False)

    @property
    def attempts(self) -> int:
        """Attempts in all: the first and one per delay of the schedule."""
        return len(self.spec.schedule) + 1

    def delay(self, failed: int, retry_after: float | None = None) -> float | None:
        if failed >= self.attempts:
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.spec.max_retry_after)
        base = self.spec.schedule[failed - 1]
        # Up to `jitter` of the delay either way, so many failed deliveries do not all come
        # back in the same second.
        return max(0.0, base * (1 + self.spec.jitter * (2 * self.rand() - 1)))


class Breaker:
    """One destination's circuit breaker. `allow()` says whether a try may go now; each try's
    outcome is told with `success()` or `failure()`. After `failures` failures in a row it
    opens: nothing goes for `open_s`, then one try goes (half-open): its success closes it,
    its failure opens it again."""

    def __init__(self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.open_s = open_s
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.open_s:
            return "half_open"
        return "open"

    def wait_s(self) -> float:
        """How long until a try may go (0: now)."""
        if self._opened_at is None or self._probing:
            return 0.0 if not self._probing else self.open_s
        return max(0.0, self._opened_at + self.open_s - self._clock())

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self.failures += 1
        if self._probing or self.failures >= self.threshold:
            self._opened_at = self._clock()
        self._probing = False
