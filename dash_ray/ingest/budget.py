"""The bound on request bytes one web replica holds before their signature is checked.

Until a body is verified, whoever sent it may be anyone, so what all such bodies may take
together is one budget per replica (64 MiB by default). A request holds the bytes it declares
in `Content-Length` (or, sent chunked, what has arrived so far) from before its body is read
until its signature has been checked; one that would pass the budget is answered 503 with
Retry-After instead of being read. Verified bodies do not count: they are bounded by each
pipeline's own limits.
"""

from __future__ import annotations

__all__ = ["DEFAULT_UNVERIFIED_BYTES", "BodyBudget"]

DEFAULT_UNVERIFIED_BYTES = 64 * 1024 * 1024


class BodyBudget:
    """Bytes held by unverified bodies in one replica (one event loop, so no lock)."""

    def __init__(self, limit_bytes: int = DEFAULT_UNVERIFIED_BYTES) -> None:
        if limit_bytes < 1:
            raise ValueError("the unverified body budget must be at least one byte")
        self.limit_bytes = limit_bytes
        self.used = 0
        self.peak = 0  # the most ever held at once, for tests and metrics

    def take(self, size: int) -> bool:
        """Hold `size` more bytes; False (holding nothing more) when that would pass the limit."""
        used = self.used + size
        if used > self.limit_bytes:
            return False
        self.used = used
        if used > self.peak:
            self.peak = used
        return True

    def give(self, size: int) -> None:
        """Give back bytes taken earlier."""
        self.used -= size
