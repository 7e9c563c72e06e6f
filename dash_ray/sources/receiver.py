"""The receiver of signed requests, for both kinds that take them: `push` (records sent to
`POST /v1/pipelines/{id}/events`, signed with `Dash-Signature`) and `webhook` (a provider's
deliveries to `POST /v1/hooks/{id}`, verified by the scheme the spec names: `dash | github |
stripe | slack | shopify | standard | hmac`). What each scheme guarantees against replays is
described in `dash_ray.ingest.signing`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dash_ray.ingest.signing import CLOCK_WINDOW_S, DELIVERY_HEADERS, SCHEMES, DashScheme, Scheme
from dash_ray.sources.base import Route
from dash_ray.spec import PushSource, WebhookSource

__all__ = ["SignedReceiver"]


@dataclass(frozen=True)
class SignedReceiver:
    """Takes requests on `route` whose signature `scheme` checks. `idempotency_header` is a
    header naming the request's idempotency key when it carries no `Idempotency-Key`."""

    route: Route
    scheme: Scheme
    idempotency_header: str | None = None

    @classmethod
    def for_push(cls, spec: PushSource, *, clock: Callable[[], float] = time.time) -> SignedReceiver:
        """Signed pushes: the signature carries a timestamp, so a replay is refused after
        300 s and is a duplicate within them."""
        return cls("events", DashScheme(window_s=CLOCK_WINDOW_S, clock=clock))

    @classmethod
    def for_webhook(cls, spec: WebhookSource, *, clock: Callable[[], float] = time.time) -> SignedReceiver:
        """Webhook deliveries. The idempotency header is the spec's, else the provider's
        unsigned delivery id header (GitHub, Shopify), so a redelivery is a duplicate."""
        options: dict[str, Any] = {"clock": clock}
        if spec.verify == "hmac":
            options.update(header=spec.header, algorithm=spec.algorithm, encoding=spec.encoding,
                           prefix=spec.prefix)
        header = spec.idempotency_header.lower() if spec.idempotency_header else DELIVERY_HEADERS.get(spec.verify)
        return cls("hooks", SCHEMES[spec.verify](**options), header)

    def precheck(self, headers: Mapping[str, str]) -> Any:
        return self.scheme.precheck(headers)

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str],
               checked: Any = None) -> str | None:
        return self.scheme.verify(headers, body, secrets, checked)
