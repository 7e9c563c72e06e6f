"""Live tickets: short-lived, single-use stand-ins for a credential (a bearer token or a page
session), so a client can open a live WebSocket (`?ticket=`) without putting its long-lived
token in a URL, where browsers, proxies and logs keep it.

A ticket is made for a credential that was just checked (`POST /v1/live-tickets`) and is worth
one socket within `ttl_s` seconds: redeeming it gives the credential back once, and never again. The
registry keeps them (memory only), so a ticket made through one web replica is good on any;
after a registry restart earlier tickets are unknown (a client asks for a new one). At most
`max_tickets` wait at once: past that the oldest go first.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from dash_ray.auth.sessions import Credential

__all__ = ["TICKET_TTL_S", "LiveTickets"]

TICKET_TTL_S = 30
_PREFIX = "dlt_"


class LiveTickets:
    """The tickets not yet redeemed. Not thread-safe: one event loop (the registry's)."""

    def __init__(self, *, ttl_s: float = TICKET_TTL_S, max_tickets: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_tickets = max_tickets
        self._clock = clock
        # Ticket -> (expires at, credential), oldest first (every ticket lives the same time).
        self._waiting: OrderedDict[str, tuple[float, Credential]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def issue(self, credential: Credential) -> str:
        """A new ticket standing for `credential` (checked by the caller) for `ttl_s` seconds."""
        self._expire()
        while len(self._waiting) >= self.max_tickets:
            self._waiting.popitem(last=False)
        ticket = _PREFIX + secrets.token_urlsafe(24)
        self._waiting[ticket] = (self._clock() + self.ttl_s, credential)
        return ticket

    def redeem(self, ticket: str) -> Credential | None:
        """The credential a ticket stands for, once; None when it is unknown, used or expired."""
        self._expire()
        found = self._waiting.pop(ticket, None)
        return None if found is None else found[1]

    def _expire(self) -> None:
        now = self._clock()
        while self._waiting:
            ticket, (expires, _) = next(iter(self._waiting.items()))
            if expires > now:
                break
            del self._waiting[ticket]
