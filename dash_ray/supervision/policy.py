"""When a supervisor restarts a crashed pipeline and when it gives up: one-for-one restarts
with exponential back-off; `failed` for a spec that cannot start; a capped, ever slower
retry (like Kubernetes' CrashLoopBackOff) for a pipeline that crashes again and again after
it has run, so its acknowledged records are never left in its log for good.

Plain Python over times the caller passes in, so the policy is tested without Ray or a clock.
Its figures (`RestartPolicy`) are settings (`DASH_MAX_RESTARTS` ...), kept with the others in
`dash_ray.settings`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from dash_ray.settings import RestartPolicy

__all__ = ["Decision", "RestartTracker"]


@dataclass(frozen=True)
class Decision:
    action: Literal["restart", "give_up"]
    delay_s: float = 0.0
    restarts_in_window: int = 0
    crash_loop: bool = False

    def __str__(self) -> str:
        if self.action == "give_up":
            return f"giving up after {self.restarts_in_window} restarts"
        loop = ", crash loop" if self.crash_loop else ""
        return f"restart in {self.delay_s:.1f} s ({self.restarts_in_window} in the window{loop})"


@dataclass
class RestartTracker:
    """The restart history of one pipeline. `ran`: it reached `running` since it was
    deployed or restarted by hand (`reset()`)."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    total: int = 0
    ran: bool = False
    _recent: deque[float] = field(default_factory=deque)
    _loop: int = 0
    _running_since: float | None = None

    def on_running(self, now: float) -> None:
        """The pipeline (re)started and takes ingest, at `now`."""
        self.ran = True
        self._running_since = now

    def on_failure(self, now: float) -> Decision:
        """Record a crash (or a failed start) at `now` and decide what to do about it."""
        policy = self.policy
        if self._running_since is not None and now - self._running_since >= policy.window_s:
            self._loop = 0  # it ran healthy for a while: out of any crash loop
        self._running_since = None
        while self._recent and now - self._recent[0] > policy.window_s:
            self._recent.popleft()
        in_window = len(self._recent)
        if in_window >= policy.max_restarts or self._loop:
            if not self.ran:
                return Decision("give_up", restarts_in_window=in_window)
            self._loop += 1
            delay = min(policy.max_backoff_s * 2 ** (self._loop - 1), policy.crash_loop_max_backoff_s)
            crash_loop = True
        else:
            delay = min(policy.backoff_s * 2 ** in_window, policy.max_backoff_s)
            crash_loop = False
        self._recent.append(now)
        self.total += 1
        return Decision("restart", delay_s=delay, restarts_in_window=in_window + 1, crash_loop=crash_loop)

    def reset(self) -> None:
        """Forget the window, any crash loop and `ran` (an operator redeployed or restarted
        the pipeline by hand); `total` stays."""
        self._recent.clear()
        self._loop = 0
        self.ran = False
        self._running_since = None
