"""When pending records become a delivery, and what it says.

Timing (`Timing.due_at`): a webhook batches (`batch.max_records` records, or `batch.max_wait`
after the first waiting one); Slack and email group as Alertmanager does: a group (records with
the same `group_by` values) first goes out `group_wait` after it started, then at most every
`group_interval` with what came since; a group quiet for `repeat_interval` is forgotten
(`SinkStore.forget_groups`), so its next record starts it anew.

Messages (`Messages`): the body each kind sends, built from the records of one delivery with
the sink's templates (`dash_ray.sinks.template`): a webhook's `{"pipeline", "sink",
"records"}`, Slack's `{"text", "blocks"}`, an email's `{"subject", "text", "html"}`.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from dash_ray.sinks.store import GroupTimes
from dash_ray.sinks.template import Template
from dash_ray.spec.sinks import EmailSink, SlackSink, WebhookSink

__all__ = ["Messages", "Timing", "delivery_id", "group_key"]

SinkSpec = WebhookSink | SlackSink | EmailSink


@dataclass(frozen=True)
class Timing:
    batching: bool  # a webhook's batch, not a group
    wait: float
    interval: float
    repeat: float
    max_records: int

    @classmethod
    def of(cls, spec: SinkSpec) -> Timing:
        if isinstance(spec, WebhookSink):
            return cls(True, spec.batch.max_wait, 0.0, 0.0, spec.batch.max_records)
        return cls(False, spec.group_wait, spec.group_interval, spec.repeat_interval, 0)

    def due_at(self, count: int, times: GroupTimes) -> float:
        """When the group's pending records (`count` of them) go out (at once: a time past)."""
        if self.batching:
            return float("-inf") if count >= self.max_records else times.started + self.wait
        if times.sent is None:
            return times.started + self.wait
        return times.sent + self.interval

    def take(self) -> int | None:
        """How many pending records one delivery takes (None: all of the group)."""
        return self.max_records if self.batching else None


def group_key(spec: SinkSpec, data: dict[str, Any]) -> str:
    """The group of a record: its `group_by` values as JSON (`""` for a webhook: one batch)."""
    if isinstance(spec, WebhookSink):
        return ""
    return orjson.dumps([data.get(name) for name in spec.group_by]).decode()


def delivery_id(pipeline_id: str, sink: str, grp: str, first_seq: int, last_seq: int) -> str:
    """A stable id for the delivery of these records: the same after any restart."""
    digest = hashlib.sha256(f"{pipeline_id}\0{sink}\0{grp}\0{first_seq}\0{last_seq}".encode()).hexdigest()[:24]
    return f"msg_{first_seq}_{last_seq}_{digest}"


class Messages:
    """The bodies of one sink's deliveries."""

    def __init__(self, pipeline_id: str, spec: SinkSpec) -> None:
        self.pipeline_id = pipeline_id
        self.spec = spec
        self.template = Template.parse(spec.template) if spec.template is not None else None
        self.title = Template.parse(spec.title if isinstance(spec, SlackSink) else
                                    spec.subject if isinstance(spec, EmailSink) else "")

    def _fields(self, record: dict[str, Any], count: int, grp: str) -> dict[str, Any]:
        own = {"_pipeline": self.pipeline_id, "_sink": self.spec.name, "_count": count, "_group": self._group(grp)}
        return {**record.get("data", {}), "seq": record.get("seq"), "time": record.get("time"), **own}

    def _group(self, grp: str) -> str:
        if isinstance(self.spec, WebhookSink) or not grp:
            return ""
        values = orjson.loads(grp)
        return ", ".join(f"{n}={v}" for n, v in zip(self.spec.group_by, values, strict=False))

    def line(self, record: dict[str, Any], count: int = 1, grp: str = "") -> str:
        """One record as text: the template filled, or its fields `name=value`."""
        if self.template is not None:
            return self.template.render(self._fields(record, count, grp))
        data = record.get("data", {})
        return ", ".join(f"{k}={v}" for k, v in data.items() if v is not None) or f"seq {record.get('seq')}"

    def body_of(self, records: Sequence[bytes], grp: str) -> bytes:
        """`body` of records given as JSON (as a sink keeps them): a webhook's without a
        template is put together from them as they are, the others read them first."""
        if isinstance(self.spec, WebhookSink) and self.template is None:
            head = orjson.dumps({"pipeline": self.pipeline_id, "sink": self.spec.name})
            return head[:-1] + b',"records":[' + b",".join(records) + b"]}"
        return self.body([orjson.loads(r) for r in records], grp)

    def body(self, records: Sequence[dict[str, Any]], grp: str) -> bytes:
        spec, count = self.spec, len(records)
        if isinstance(spec, WebhookSink):
            out = [{**r, "text": self.line(r)} for r in records] if self.template is not None else list(records)
            return orjson.dumps({"pipeline": self.pipeline_id, "sink": spec.name, "records": out})
        title = self.title.render(self._fields(records[0], count, grp))
        shown = [self.line(r, count, grp) for r in records[:spec.max_records]]
        more = count - len(shown)
        if isinstance(spec, SlackSink):
            blocks: list[dict[str, Any]] = [
                {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(f"• {s}" for s in shown)[:3000]}},
            ]
            if more:
                blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {more} more"}]})
            return orjson.dumps({"text": f"{title}\n" + "\n".join(shown), "blocks": blocks})
        tail = [f"... and {more} more"] if more else []
        text = "\n".join([title, "", *shown, *tail]) + "\n"
        items = "".join(f"<li>{html.escape(s)}</li>" for s in shown)
        html_body = (f"<html><body><h3>{html.escape(title)}</h3><ul>{items}</ul>"
                     + (f"<p>... and {more} more</p>" if more else "") + "</body></html>")
        return orjson.dumps({"subject": title, "text": text, "html": html_body})
