"""The `webhook` source: a provider's deliveries to `POST /v1/hooks/{id}`, verified by the
scheme the spec names (`verify: dash | github | stripe | slack | shopify | standard | hmac`;
each is described, with what it guarantees against replays, in `dash_ray.ingest.signing`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dash_ray.ingest.signing import DELIVERY_HEADERS, SCHEMES, Scheme
from dash_ray.sources.base import Ingest, Route
from dash_ray.spec import WebhookSource

__all__ = ["WebhookReceiver"]


@dataclass(frozen=True)
class WebhookReceiver:
    """Takes webhook deliveries. `idempotency_header` is the spec's, else the provider's
    unsigned delivery id header (GitHub, Shopify), so a redelivery is a duplicate."""

    scheme: Scheme
    idempotency_header: str | None = None
    route: Route | None = "hooks"

    @classmethod
    def from_spec(cls, spec: WebhookSource, *, clock: Callable[[], float] = time.time) -> WebhookReceiver:
        options: dict[str, Any] = {"clock": clock}
        if spec.verify == "hmac":
            options.update(header=spec.header, algorithm=spec.algorithm, encoding=spec.encoding,
                           prefix=spec.prefix)
        header = spec.idempotency_header.lower() if spec.idempotency_header else DELIVERY_HEADERS.get(spec.verify)
        return cls(SCHEMES[spec.verify](**options), header)

    def precheck(self, headers: Mapping[str, str]) -> Any:
        return self.scheme.precheck(headers)

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str],
               checked: Any = None) -> str | None:
        return self.scheme.verify(headers, body, secrets, checked)

    async def run(self, ingest: Ingest) -> None:
        return None
