"""When a supervisor restarts a crashed pipeline and when it gives up: one-for-one restarts
with exponential back-off, and `failed` after too many restarts inside a sliding window.

Plain Python over an injected clock, so the policy is tested without Ray; the registry actor
applies it to real actors.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Decision", "RestartPolicy", "RestartTracker"]


@dataclass(frozen=True)
class RestartPolicy:
    """At most `max_restarts` restarts within `window_s` seconds; the n-th consecutive restart
    waits `min(backoff_s * 2**(n-1), max_backoff_s)`. A pipeline that stays healthy for
    `window_s` starts again from the shortest back-off."""

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_s: float = 0.5
    max_backoff_s: float = 15.0


@dataclass(frozen=True)
class Decision:
    action: Literal["restart", "give_up"]
    delay_s: float = 0.0
    restarts_in_window: int = 0


@dataclass
class RestartTracker:
    """The restart history of one pipeline."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    total: int = 0
    _recent: deque[float] = field(default_factory=deque)

    def on_failure(self, now: float) -> Decision:
        """Record a crash at `now` and decide what to do about it."""
        while self._recent and now - self._recent[0] > self.policy.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.policy.max_restarts:
            return Decision("give_up", restarts_in_window=len(self._recent))
        self._recent.append(now)
        self.total += 1
        n = len(self._recent)
        delay = min(self.policy.backoff_s * 2 ** (n - 1), self.policy.max_backoff_s)
        return Decision("restart", delay_s=delay, restarts_in_window=n)

    def reset(self) -> None:
        """Forget the window (an operator redeployed or resumed the pipeline)."""
        self._recent.clear()
