"""The parts of a sink, without Ray or a network: templates (no code runs), the retry
schedule with jitter and Retry-After, the breaker, the Alertmanager timing of groups and the
messages each kind sends."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dash_ray.sinks.grouping import Messages, Timing, delivery_id, group_key
from dash_ray.sinks.outbound import retry_after_s, standard_signature
from dash_ray.sinks.policy import Breaker, Retries
from dash_ray.sinks.store import GroupTimes, SinkStore
from dash_ray.sinks.template import Template, TemplateError
from dash_ray.spec import parse_spec
from dash_ray.spec.sinks import RetrySpec, duration_s


def sink(**fields):
    return parse_spec({"id": "p", "sinks": [fields]}).sinks[0]


def test_a_template_fills_fields_and_runs_no_code() -> None:
    t = Template.parse("{device} at {temp_c:.1f} °C {{literal}} {missing}")
    assert t.render({"device": "d1", "temp_c": 31.25}) == "d1 at 31.2 °C {literal} "
    assert t.render({"device": None, "temp_c": "hot"}) == " at hot °C {literal} "  # a spec that does not fit
    for bad in ("{a.__class__}", "{a[0]}", "{a!r}", "{0}", "{", "{a:{b}}", "{a:>999999999}"):
        with pytest.raises(TemplateError):
            Template.parse(bad)
    assert Template.parse("{a} {_count} {b}").unknown({"a"}) == ["b"]


def test_durations_read_seconds_and_units() -> None:
    assert [duration_s(v) for v in (5, 2.5, "30s", "5m", "4h", "1d", "250ms")] == [
        5.0, 2.5, 30.0, 300.0, 14400.0, 86400.0, 0.25]
    for bad in ("5 minutes", "", True, None):
        with pytest.raises(ValueError):
            duration_s(bad)


def test_retries_follow_the_schedule_with_jitter_and_honour_retry_after() -> None:
    spec = RetrySpec(schedule=[5, "5m", "30m"], jitter=0.2, max_retry_after="1h")
    low, high = Retries(spec, rand=lambda: 0.0), Retries(spec, rand=lambda: 1.0)
    assert low.attempts == 4
    assert [low.delay(n) for n in (1, 2, 3)] == pytest.approx([4.0, 240.0, 1440.0])
    assert [high.delay(n) for n in (1, 2, 3)] == pytest.approx([6.0, 360.0, 2160.0])
    assert low.delay(4) is None  # the last attempt failed: dead
    assert low.delay(1, retry_after=42) == 42 and low.delay(1, retry_after=10**6) == 3600
    assert RetrySpec().schedule == [5, 300, 1800, 7200, 18000, 36000]  # Svix's


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("7", now=0) == 7
    assert retry_after_s("Thu, 01 Jan 1970 00:01:40 GMT", now=40) == 60
    assert retry_after_s("soon", now=0) is None and retry_after_s(None, now=0) is None


def test_the_breaker_opens_after_failures_in_a_row_and_probes_half_open() -> None:
    now = [0.0]
    breaker = Breaker(3, 30, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow() and breaker.wait_s() == 30
    now[0] = 30
    assert breaker.state == "half_open" and breaker.allow() and not breaker.allow()  # one probe only
    breaker.failure()
    assert breaker.state == "open"
    now[0] = 61
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_groups_wait_then_go_every_interval_and_batches_go_when_full() -> None:
    grouped = Timing.of(sink(name="m", kind="email", **{"from": "a@x"}, to=["b@x"], group_wait="30s",
                             group_interval="5m", repeat_interval="4h"))
    assert grouped.due_at(1000, GroupTimes(started=100, sent=None)) == 130
    assert grouped.due_at(3, GroupTimes(started=100, sent=130)) == 430
    batch = Timing.of(sink(name="w", kind="webhook", url="http://x", batch={"max_records": 10, "max_wait": 2}))
    assert batch.due_at(3, GroupTimes(started=100, sent=None)) == 102
    assert batch.due_at(10, GroupTimes(started=100, sent=None)) == float("-inf")


def test_group_keys_ids_and_messages() -> None:
    spec = sink(name="ops", kind="slack", url="https://hooks.example/x", group_by=["device"], max_records=2,
                template="{device}: {temp_c}", title="{_count} hot on {_group}")
    records = [{"seq": i, "time": "2026-01-01T00:00:00Z", "data": {"device": "d1", "temp_c": 40 + i}}
               for i in range(1, 4)]
    grp = group_key(spec, records[0]["data"])
    body = orjson.loads(Messages("p", spec).body(records, grp))
    assert body["text"].startswith("3 hot on device=d1\n")
    assert body["blocks"][0]["text"]["text"] == "3 hot on device=d1"
    assert body["blocks"][1]["text"]["text"] == "• d1: 41\n• d1: 42" and "and 1 more" in orjson.dumps(body).decode()
    same = delivery_id("p", "ops", grp, 1, 3)
    assert same == delivery_id("p", "ops", grp, 1, 3) != delivery_id("p", "ops", grp, 1, 4)
    hook = sink(name="w", kind="webhook", url="http://x")
    assert orjson.loads(Messages("p", hook).body(records[:1], "")) == {"pipeline": "p", "sink": "w",
                                                                        "records": records[:1]}


def test_the_signature_is_the_standard_webhooks_one() -> None:
    # The Standard Webhooks reference vector (github.com/standard-webhooks, the spec's example).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_body_from_stored_json_is_the_body_of_the_records() -> None:
    records = [{"seq": i, "time": "2026-01-01T00:00:00Z", "data": {"device": "d1", "temp_c": 40.5 + i,
                                                                   "raw": {"a": [i, None]}}} for i in range(1, 4)]
    stored = [orjson.dumps(r) for r in records]
    for spec in (sink(name="w", kind="webhook", url="http://x"),
                 sink(name="t", kind="webhook", url="http://x", template="{device}: {temp_c}"),
                 sink(name="ops", kind="slack", url="http://x", group_by=["device"], title="{_count} on {_group}")):
        messages = Messages("p", spec)
        grp = group_key(spec, records[0]["data"])
        assert orjson.loads(messages.body_of(stored, grp)) == orjson.loads(messages.body(records, grp))


def test_a_delivery_takes_its_groups_oldest_pending_records_or_nothing(tmp_path: Path) -> None:
    store = SinkStore(tmp_path / "state.sqlite")
    try:
        store.take([(seq, "g", orjson.dumps({"seq": seq})) for seq in (1, 2, 3, 4)], 4, 1.0)
        store.take([(5, "h", b'{"seq":5}')], 5, 1.0)
        with pytest.raises(ValueError, match="not the 2 taken"):
            store.form("x", "g", [1, 3], b"{}", 2.0)  # 2 lies between: not the oldest two
        assert [s for s, _ in store.pending_json("g")] == [1, 2, 3, 4] and store.next_queued() is None
        taken = store.pending_json("g", 2)
        store.form("y", "g", [s for s, _ in taken], b"{}", 2.0)
        assert [s for s, _ in store.pending_json("g")] == [3, 4] and store.pending_count() == 3
        queued = store.next_queued()
        assert queued is not None and (queued.first_seq, queued.last_seq, queued.records) == (1, 2, 2)
    finally:
        store.close()
