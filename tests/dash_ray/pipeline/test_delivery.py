"""Sinks delivering from a pipeline's process (`dash_ray.pipeline.host` with
`dash_ray.pipeline.delivery`), without Ray, to real receivers on loopback: a webhook receiver
that fails then recovers, answers 429 with Retry-After and 410; the signatures checked as a
receiver checks them; a Slack receiver; an SMTP server (aiosmtpd) getting one mail per group
for a storm; and a restart that delivers what the last process had not, with the same ids."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from dash_ray.ingest.batch import RawBatch
from dash_ray.ingest.signing import StandardScheme
from dash_ray.pipeline.host import PipelineHost
from dash_ray.settings import PipelineSettings
from tests.dash_ray.pipeline.sink_receivers import Receiver, SmtpServer
from tests.waiting import until

FIELDS = {"device": {"path": "$.device", "type": "string"}, "temp_c": {"path": "$.temp", "type": "double"}}
FAST = {"schedule": [0.05, 0.05, 0.05], "jitter": 0, "breaker_failures": 100, "breaker_open": 0.1}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def spec(sinks: list[dict[str, Any]], pipeline_id: str = "alerts") -> dict[str, Any]:
    return {"id": pipeline_id, "mapping": {"fields": FIELDS}, "sinks": sinks, "flush": {"records": 100_000,
                                                                                        "seconds": 0.2}}


def settings(tmp_path: Path) -> PipelineSettings:
    return PipelineSettings(wal_root=str(tmp_path / "wal"), lake_url=str(tmp_path / "lake"))


def readings(temps: list[float], device: str = "d1") -> RawBatch:
    payload = b"".join(orjson.dumps({"device": device, "temp": t}) + b"\n" for t in temps)
    return RawBatch(payload=payload, count=len(temps), received_at_us=time.time_ns() // 1000)


async def no_dsn() -> str | None:
    return None


async def start(tmp_path: Path, data: dict[str, Any]) -> PipelineHost:
    host = PipelineHost(data, settings(tmp_path), address="127.0.0.1")

    async def secrets() -> dict[str, str]:
        return {"hook-key": SECRET}
    await host.start(no_dsn, secrets)
    return host


def seqs_of(receiver: Receiver) -> list[int]:
    return [r["seq"] for _, body in receiver.delivered() for r in orjson.loads(body)["records"]]


async def test_a_webhook_retries_500_and_429_then_delivers_every_selected_record_signed(tmp_path: Path) -> None:
    receiver = await Receiver(script=[(500, {}), (503, {}), (429, {"Retry-After": "1"})]).start()
    host = await start(tmp_path, spec([{"name": "hook", "kind": "webhook", "url": receiver.url, "when": "temp_c > 30",
                                        "secret": {"secret": "hook-key"}, "retry": FAST,
                                        "batch": {"max_records": 2, "max_wait": 0.05}}]))
    try:
        await host.core.ingest([readings([25, 31, 32, 20, 33])])
        await until(lambda: len(seqs_of(receiver)) == 3, timeout=20)
        assert seqs_of(receiver) == [2, 3, 5]
        first = receiver.requests[0]
        assert [r[2] for r in receiver.requests[:4]] == [500, 503, 429, 200]
        # Every attempt of the first delivery had the same id; 429's Retry-After was waited.
        assert len({h["webhook-id"] for h, _, _ in receiver.requests[:4]}) == 1
        assert int(receiver.requests[3][0]["webhook-timestamp"]) - int(first[0]["webhook-timestamp"]) >= 1
        for headers, body, _ in receiver.requests:
            StandardScheme().verify(headers, body, [SECRET])  # raises when it does not match
        assert orjson.loads(first[1])["pipeline"] == "alerts"
        # The shape of GET /records: {"seq", "time" (ISO 8601, Z), "data"}.
        record = orjson.loads(receiver.delivered()[0][1])["records"][0]
        assert record["seq"] == 2 and record["time"].endswith("Z") and record["data"] == {"device": "d1",
                                                                                            "temp_c": 31.0}
        # The receiver has the request a moment before the sink has its answer.
        [state] = await until(lambda: (s := host.sink_states())[0]["delivered"] == 2 and s, timeout=10)
        assert state["failed"] == 3 and state["dead"] == 0
        assert state["last_delivered_seq"] == 5 and state["last_error"].startswith("HTTP 429")
        assert host.health()["counters"]["sink_deliveries"] == {"hook": {"delivered": 2, "retried": 3, "dead": 0}}
    finally:
        await host.stop()
        await receiver.stop()


async def test_410_disables_and_a_dead_delivery_is_redelivered_with_its_id(tmp_path: Path) -> None:
    receiver = await Receiver(script=[(410, {})]).start()
    host = await start(tmp_path, spec([{"name": "hook", "kind": "webhook", "url": receiver.url, "retry": FAST,
                                        "batch": {"max_records": 10, "max_wait": 0.05}}]))
    try:
        await host.core.ingest([readings([40, 41])])
        await until(lambda: host.sink_states()[0]["state"] == "disabled", timeout=20)
        [state] = host.sink_states()
        [dead] = state["dead_deliveries"]
        assert dead["reason"].startswith("HTTP 410") and (dead["first_seq"], dead["last_seq"]) == (1, 2)
        await host.core.ingest([readings([42])])
        assert (await host.redeliver("hook")) == {"sink": "hook", "redelivered": 1}
        await until(lambda: seqs_of(receiver) == [1, 2, 3], timeout=20)
        assert receiver.delivered()[0][0]["webhook-id"] == receiver.requests[0][0]["webhook-id"] == dead["id"]
        await until(lambda: host.sink_states()[0]["dead"] == 0, timeout=10)
    finally:
        await host.stop()
        await receiver.stop()


async def test_retries_run_out_into_a_dead_delivery_kept_with_its_reason(tmp_path: Path) -> None:
    receiver = await Receiver(script=[(500, {})] * 4).start()
    host = await start(tmp_path, spec([{"name": "hook", "kind": "webhook", "url": receiver.url, "retry": FAST,
                                        "batch": {"max_records": 10, "max_wait": 0.05}}]))
    try:
        await host.core.ingest([readings([40])])
        await until(lambda: host.sink_states()[0]["dead"] == 1, timeout=20)
        assert len(receiver.requests) == 4 and host.sink_states()[0]["state"] == "running"
        assert host.sink_states()[0]["dead_deliveries"][0]["attempts"] == 4
    finally:
        await host.stop()
        await receiver.stop()


async def test_the_breaker_opens_and_a_half_open_probe_closes_it(tmp_path: Path) -> None:
    receiver = await Receiver(script=[(500, {})] * 2).start()
    retry = {**FAST, "schedule": [0.01] * 5, "breaker_failures": 2, "breaker_open": 1.0}
    host = await start(tmp_path, spec([{"name": "hook", "kind": "webhook", "url": receiver.url, "retry": retry,
                                        "batch": {"max_records": 10, "max_wait": 0.05}}]))
    try:
        await host.core.ingest([readings([40])])
        await until(lambda: len(receiver.requests) == 2, timeout=20)
        # Open (or probing) now, unless a slow machine already let the probe through. (The
        # status comes from the sink process within a moment of the change.)
        await until(lambda: host.sink_states()[0]["breaker"] in ("open", "half_open") or len(receiver.requests) >= 3,
                    timeout=10, what="the breaker open")
        await until(lambda: seqs_of(receiver) == [1], timeout=20)
        # The retry was due 0.01 s after the second failure; the open breaker held it ~1 s.
        assert receiver.times[2] - receiver.times[1] >= 0.9
        await until(lambda: host.sink_states()[0]["breaker"] == "closed", timeout=10)
    finally:
        await host.stop()
        await receiver.stop()


async def test_the_status_says_half_open_once_the_breaker_s_time_is_up_with_nothing_else_happening(
        tmp_path: Path) -> None:
    """The breaker's move from open to half-open is time alone (no try, no counter moves): the
    sink process tells it all the same, while the next retry is still a minute away."""
    receiver = await Receiver(script=[(500, {})]).start()
    retry = {**FAST, "schedule": [60.0], "breaker_failures": 1, "breaker_open": 1.0}
    host = await start(tmp_path, spec([{"name": "hook", "kind": "webhook", "url": receiver.url, "retry": retry,
                                        "batch": {"max_records": 10, "max_wait": 0.05}}]))
    try:
        await host.core.ingest([readings([40])])
        await until(lambda: host.sink_states()[0]["breaker"] == "open", timeout=20, what="the breaker open")
        opened = time.monotonic()
        await until(lambda: host.sink_states()[0]["breaker"] == "half_open", timeout=10, what="the status half-open")
        assert time.monotonic() - opened < 3.0 and len(receiver.requests) == 1
    finally:
        await host.stop()
        await receiver.stop()


async def test_slack_gets_text_and_blocks_one_message_per_group(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    host = await start(tmp_path, spec([{"name": "ops", "kind": "slack", "url": receiver.url, "group_by": ["device"],
                                        "group_wait": 0.3, "group_interval": 60, "template": "{device} {temp_c}",
                                        "when": "temp_c > 40"}]))
    try:
        await host.core.ingest([readings([41, 42, 10], "d1"), readings([43], "d2")])
        await until(lambda: len(receiver.requests) == 2, timeout=20)
        bodies = sorted((orjson.loads(b) for _, b in receiver.delivered()), key=lambda b: b["text"])
        assert [b["text"] for b in bodies] == ["2 record(s) from alerts\nd1 41.0\nd1 42.0",
                                               "1 record(s) from alerts\nd2 43.0"][::-1] or \
            [b["blocks"][1]["text"]["text"] for b in bodies] == ["• d2 43.0", "• d1 41.0\n• d1 42.0"]
        assert all(b["blocks"][0]["type"] == "header" for b in bodies)
    finally:
        await host.stop()
        await receiver.stop()


async def test_an_alert_storm_is_one_mail_per_group_per_interval(tmp_path: Path) -> None:
    smtp = SmtpServer().start()
    host = await start(tmp_path, spec([{"name": "mail", "kind": "email", "smtp": {"port": smtp.port},
                                        "from": "dash@example.com", "to": ["ops@example.com"],
                                        "subject": "{_count} hot readings on {device}", "group_by": ["device"],
                                        "group_wait": 0.5, "group_interval": 1.0, "when": "temp_c > 30",
                                        "template": "{device}: {temp_c} at {time}"}]))
    try:
        await host.core.ingest([readings([31 + i % 10 for i in range(500)], "d1"),
                                readings([31 + i % 10 for i in range(500)], "d2")])
        await until(lambda: len(smtp.box.mails) == 2, timeout=20)
        subjects = sorted(m["Subject"] for m in smtp.box.mails)
        assert subjects == ["500 hot readings on d1", "500 hot readings on d2"]
        mail = smtp.box.mails[0]
        plain = mail.get_body(preferencelist=("plain",)).get_content()
        html = mail.get_body(preferencelist=("html",)).get_content()
        assert "... and 480 more" in plain and "<li>" in html and mail["Message-ID"].startswith("<msg_")
        # More of the same storm within the interval: one more mail per group, not hundreds.
        await host.core.ingest([readings([35] * 300, "d1"), readings([35] * 300, "d2")])
        await until(lambda: len(smtp.box.mails) == 4, timeout=20)
        assert sorted(m["Subject"] for m in smtp.box.mails[2:]) == ["300 hot readings on d1",
                                                                   "300 hot readings on d2"]
        await until(lambda: host.sink_states()[0]["delivered_records"] == 1600, timeout=10)
    finally:
        await host.stop()
        smtp.stop()


async def test_a_restart_delivers_what_was_not_delivered_from_the_lake_and_log_with_the_same_ids(
        tmp_path: Path) -> None:
    receiver = await Receiver(script=[(500, {})] * 10).start()
    sinks = [{"name": "hook", "kind": "webhook", "url": receiver.url, "retry": {**FAST, "schedule": [0.05] * 20},
              "batch": {"max_records": 100, "max_wait": 0.05}}]
    host = await start(tmp_path, spec(sinks))
    try:
        await host.core.ingest([readings([float(i) for i in range(250)])])
        await until(lambda: len(receiver.requests) >= 2, timeout=20)
        await host.core.flush()  # part of it in the lake (the log trimmed), then the process goes
    finally:
        await host.stop()
    failed_ids = {h["webhook-id"] for h, _, _ in receiver.requests}
    receiver.script.clear()
    host = await start(tmp_path, spec(sinks))
    try:
        await host.core.ingest([readings([1000.0])])
        await until(lambda: sorted(seqs_of(receiver)) == list(range(1, 252)), timeout=30)
        delivered_ids = [h["webhook-id"] for h, _ in receiver.delivered()]
        assert failed_ids <= set(delivered_ids) and len(delivered_ids) == len(set(delivered_ids))
    finally:
        await host.stop()
        await receiver.stop()


async def test_a_queue_overflow_is_read_back_from_the_lake(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    host = PipelineHost(spec([{"name": "hook", "kind": "webhook", "url": receiver.url,
                               "batch": {"max_records": 1000, "max_wait": 0.05}}]),
                        replace(settings(tmp_path), sink_queue_records=10), address="127.0.0.1")
    await host.start(no_dsn)
    try:
        for i in range(5):
            await host.core.ingest([readings([float(i)] * 30)])
        await until(lambda: sorted(seqs_of(receiver)) == list(range(1, 151)), timeout=30)
        assert host.sink_states()[0]["dropped_batches"] >= 1
    finally:
        await host.stop()
        await receiver.stop()


async def test_a_sink_added_later_sends_what_comes_after_not_the_history(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    host = await start(tmp_path, spec([]))
    try:
        await host.core.ingest([readings([40, 41])])
        await host.core.flush()
    finally:
        await host.stop()
    host = await start(tmp_path, spec([{"name": "hook", "kind": "webhook", "url": receiver.url,
                                        "batch": {"max_wait": 0.05}}]))
    try:
        await host.core.ingest([readings([42])])
        await until(lambda: seqs_of(receiver) == [3], timeout=20)
    finally:
        await host.stop()
        await receiver.stop()


async def test_a_sink_removed_from_the_spec_and_added_again_starts_anew(tmp_path: Path) -> None:
    """Removing a sink forgets its state (cursor, waiting records, dead deliveries): added
    again under the same name it sends what comes after, not everything since it was removed."""
    receiver = await Receiver().start()
    down = {"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/", "batch": {"max_wait": 0.05},
            "retry": {"schedule": [0.05], "jitter": 0}}
    host = await start(tmp_path, spec([down]))
    try:
        await host.core.ingest([readings([40, 41])])  # nobody listens: they wait, then die
        await until(lambda: host.sink_states()[0]["dead"] >= 1, timeout=20, what="a dead delivery")
    finally:
        await host.stop()
    host = await start(tmp_path, spec([]))  # the sink removed
    try:
        await host.core.ingest([readings([42, 43])])
        await host.core.flush()
    finally:
        await host.stop()
    assert not (settings(tmp_path).wal_dir("alerts") / "sinks" / "hook").exists()
    host = await start(tmp_path, spec([{**down, "url": receiver.url}]))  # the same name, again
    try:
        [state] = host.sink_states()
        assert state["dead"] == 0 and state["queued"] == 0, state
        await host.core.ingest([readings([44])])
        await until(lambda: seqs_of(receiver) == [5], timeout=20, what="only the record after it came back")
    finally:
        await host.stop()
        await receiver.stop()
