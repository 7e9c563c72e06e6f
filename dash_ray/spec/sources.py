"""The `source` block of a spec: one model per kind, chosen by `kind`. `dash_ray.sources`
builds what runs from these."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from dash_ray.spec.base import PipelineId, SecretRef, SpecModel
from dash_ray.spec.polling import GraphqlPollSource, HttpPollSource

__all__ = ["SOURCE_KINDS", "DemoSource", "GraphqlPollSource", "HttpPollSource", "MqttSource",
           "MqttTls", "PipelineSource", "PushSource",
           "Source", "WebhookSource"]

class PushSource(SpecModel):
    """Signed HTTP push to `POST /v1/pipelines/{id}/events`."""

    kind: Literal["push"] = "push"


class WebhookSource(SpecModel):
    """A webhook receiver at `POST /v1/hooks/{id}`, verified by one scheme (each described in
    `dash_ray.ingest.signing`): `dash` (this project's `Dash-Signature`), `github`
    (`X-Hub-Signature-256`), `stripe` (`Stripe-Signature`), `slack` (`X-Slack-Signature`),
    `shopify` (`X-Shopify-Hmac-Sha256`), `standard` (Standard Webhooks), or `hmac` (a header
    you name, carrying an HMAC of the raw body: `header`, `algorithm`, `encoding`, `prefix`).
    `idempotency_header` names a header whose value is the request's idempotency key (by
    default GitHub's and Shopify's delivery id)."""

    kind: Literal["webhook"] = "webhook"
    verify: Literal["dash", "github", "stripe", "slack", "shopify", "standard", "hmac"] = "dash"
    header: str | None = None
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    idempotency_header: str | None = None

    @model_validator(mode="after")
    def _header(self) -> WebhookSource:
        if self.verify == "hmac" and not self.header:
            raise ValueError("verify 'hmac' needs 'header', the request header holding the signature")
        if self.verify != "hmac":
            # Values other than the defaults (a stored spec carries every field).
            options = [name for name in ("algorithm", "encoding", "header", "prefix")
                       if getattr(self, name) != WebhookSource.model_fields[name].default]
            if options:
                raise ValueError(f"{', '.join(repr(o) for o in options)} apply only to verify 'hmac'; "
                                 f"{self.verify!r} fixes its own")
        return self


class DemoSource(SpecModel):
    """Built-in generator of simulated sensor readings (`dash_ray.sources.demo`), `rate` records a
    second, fed through the same durable ingest path as pushed records."""

    kind: Literal["demo"] = "demo"
    rate: float = Field(default=5.0, gt=0, le=100_000)
    devices: int = Field(default=6, ge=1, le=10_000)


class MqttTls(SpecModel):
    """TLS to the broker: `ca` a CA bundle file to trust (default: the system's), `insecure`
    true skips the check of the broker's certificate and name (tests only)."""

    ca: str | None = None
    insecure: bool = False


class MqttSource(SpecModel):
    """An MQTT subscription (`dash_ray.sources.mqtt`): `url` `mqtt://host:port` (`mqtts://`
    for TLS), `topics` filters (`+`, `#` wildcards), `qos` 0 or 1 (1: a message is
    acknowledged to the broker only once stored durably, over a persistent session).
    `client_id` defaults to `dash-<pipeline id>` (stable across restarts: the session is
    the broker's memory of what is not yet acknowledged). `topic_key` names the key each
    object record gets with the message's topic (null: none). `batch`: most messages per
    durable append; `session_expiry`: seconds the broker keeps the session while away."""

    kind: Literal["mqtt"] = "mqtt"
    url: Annotated[str, Field(pattern=r"^mqtts?://[^/?#]+(:[0-9]+)?/?$")]
    topics: Annotated[list[Annotated[str, Field(min_length=1, max_length=1024)]], Field(min_length=1, max_length=64)]
    qos: Literal[0, 1] = 1
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    username: str | None = None
    password: SecretRef | None = None
    tls: bool | MqttTls = False
    topic_key: Annotated[str, Field(min_length=1, max_length=63)] | None = "_topic"
    batch: int = Field(default=1000, ge=1, le=65_535)
    session_expiry: int = Field(default=7 * 86_400, ge=60, le=4_294_967_294)


class PipelineSource(SpecModel):
    """Another pipeline's mapped records (`dash_ray.sources.follow`), in seq order, each once;
    `from` is its id. Each record reaches this pipeline's mapping as the producer's mapped
    fields, with `seq` and `time` beside them."""

    kind: Literal["pipeline"] = "pipeline"
    from_: PipelineId = Field(alias="from")
    batch: int = Field(default=1000, ge=1, le=10_000)


Source = Annotated[PushSource | WebhookSource | DemoSource | HttpPollSource | GraphqlPollSource | MqttSource
                   | PipelineSource,
                   Field(discriminator="kind")]

# The kinds this code serves (every kind of docs/API.md's contract, and mqtt).
SOURCE_KINDS = ("push", "webhook", "demo", "http_poll", "graphql_poll", "mqtt", "pipeline")
