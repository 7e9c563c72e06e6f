"""The `sinks` list of a spec: where mapped records go out, one model per kind (`webhook`,
`slack`, `email`) chosen by `kind`. `dash_ray.sinks` builds what delivers from these.

Every sink has a `name` (unique in its pipeline: it names the sink's durable state and its
routes), a `when` expression over the mapped fields (checked at deploy with the mapping's own
engine, `dash_ray.sinks.select`), a `template` that fills `{field}` from a record and runs no
code (`dash_ray.sinks.template`), and a `retry` schedule. Secrets (the webhook's signing key,
the Slack URL, the SMTP password) are only ever `{"secret": name}` references (or, for the
Slack URL, a plain URL). Slack and email group records as Alertmanager groups alerts
(`group_by`, `group_wait`, `group_interval`, `repeat_interval`); the webhook batches them
(`batch`). Durations are seconds or text like `30s`, `5m`, `4h`, `1d`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from dash_ray.spec.base import FieldName, SecretRef, SpecModel

__all__ = ["SINK_KINDS", "BatchSpec", "EmailSink", "GroupingSpec", "RetrySpec", "Sink", "SlackSink", "SmtpSpec",
           "WebhookSink", "duration_s", "sink_name_problems"]

SINK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SINK_KINDS = ("webhook", "slack", "email")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def duration_s(value: object) -> float:
    """Seconds from a number or from text like `30s`, `5m`, `4h`, `1d`, `250ms` (a bare number
    is seconds); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is seconds or text like '30s', '5m', '4h'")
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("a duration is seconds or text like '30s', '5m', '4h'")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


Duration = Annotated[float, BeforeValidator(duration_s), Field(ge=0, le=30 * 86400)]
SinkName = Annotated[str, Field(pattern=SINK_NAME_PATTERN)]
Template = Annotated[str, Field(max_length=4000)]


class RetrySpec(SpecModel):
    """When a failed delivery is tried again: after each delay of `schedule` in turn (each
    with up to `jitter` of itself added or taken at random), then it is dead. Svix's schedule
    by default. A `Retry-After` answer waits what it asks instead (up to `max_retry_after`).
    The breaker opens after `breaker_failures` failures in a row and lets one try through
    after `breaker_open` (half-open)."""

    schedule: list[Duration] = Field(default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0],
                                     max_length=20)
    jitter: float = Field(default=0.2, ge=0, le=1)
    timeout: Duration = 10.0
    max_retry_after: Duration = 86400.0
    breaker_failures: int = Field(default=5, ge=1, le=1000)
    breaker_open: Duration = 30.0


class BatchSpec(SpecModel):
    """A webhook delivery carries up to `max_records` records, sent at most `max_wait` s after
    the first of them was mapped."""

    max_records: int = Field(default=100, ge=1, le=10_000)
    max_wait: Duration = 1.0


class GroupingSpec(SpecModel):
    """Alertmanager's grouping: records with the same values of `group_by` form a group; a new
    group's first message waits `group_wait` (to gather its first records), later ones go out
    at most every `group_interval` and carry what came since; a group quiet for
    `repeat_interval` is forgotten, so its next record starts it again (records never
    resolve, so nothing is re-sent without a new record)."""

    group_by: list[FieldName] = Field(default_factory=list, max_length=8)
    group_wait: Duration = 30.0
    group_interval: Duration = 300.0
    repeat_interval: Duration = 14400.0
    max_records: int = Field(default=20, ge=1, le=1000)


class _SinkBase(SpecModel):
    name: SinkName
    when: str | None = Field(default=None, max_length=2000)
    template: Template | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    max_pending: int = Field(default=10_000, ge=1, le=10_000_000)


class WebhookSink(_SinkBase):
    """POST `{"pipeline": id, "records": [...]}` to `url`, signed the Standard Webhooks way
    with the named secret `secret` (unsigned without one). With a `template`, each record
    carries it filled in as `text`."""

    kind: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://", max_length=2000)
    secret: SecretRef | None = None
    headers: dict[str, str] = Field(default_factory=dict, max_length=20)
    batch: BatchSpec = Field(default_factory=BatchSpec)


class SlackSink(_SinkBase, GroupingSpec):
    """A Slack incoming webhook: one message per group per interval, `text` and `blocks`
    (a header and one line per record, `template` filled, at most `max_records` lines)."""

    kind: Literal["slack"] = "slack"
    url: SecretRef | Annotated[str, Field(pattern=r"^https?://", max_length=2000)]
    title: Template = "{_count} record(s) from {_pipeline}"


class SmtpSpec(SpecModel):
    host: str = Field(default="127.0.0.1", max_length=255)
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    username: str | None = Field(default=None, max_length=255)
    password: SecretRef | None = None


class EmailSink(_SinkBase, GroupingSpec):
    """A mail per group per interval through `smtp`, with a plain-text and an HTML part:
    `subject` (filled from the group's first record) and one `template` line per record."""

    kind: Literal["email"] = "email"
    smtp: SmtpSpec = Field(default_factory=SmtpSpec)
    from_: str = Field(alias="from", max_length=320)
    to: list[Annotated[str, Field(max_length=320)]] = Field(min_length=1, max_length=100)
    subject: Template = "{_count} record(s) from {_pipeline}"

    @model_validator(mode="after")
    def _login(self) -> EmailSink:
        if self.smtp.password is not None and not self.smtp.username:
            raise ValueError("smtp.password needs smtp.username")
        return self


Sink = Annotated[WebhookSink | SlackSink | EmailSink, Field(discriminator="kind")]


def sink_name_problems(names: list[str]) -> list[tuple[int, str]]:
    """(index, message) of each sink whose name an earlier sink has."""
    seen: set[str] = set()
    found = []
    for i, name in enumerate(names):
        if name in seen:
            found.append((i, f"sink name {name!r} is used twice; each sink needs its own"))
        seen.add(name)
    return found
