"""Dashboards compute every widget with the query API, over any range: a 6 h window over
24,000 readings counts all of them and its chart starts where the data starts; a 90-day window
over readings with explicit event times (signed push) draws one true aggregate per bucket; the
live tail folds into the current bucket between two queries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.ray

UTC = dt.timezone.utc


def seed(platform: Any, pipeline_id: str, secret: str, times: list[dt.datetime], *, devices: int = 3) -> None:
    """Readings at `times` (n = their index, temp from it), pushed signed in batches, then stored."""
    records = [{"ts": t.isoformat(), "device": f"sensor-{i % devices}", "temp": 10 + (i % 50) * 0.5, "n": i}
               for i, t in enumerate(times)]
    batch = 5000
    for start in range(0, len(records), batch):
        last = start + batch >= len(records)
        platform.client.ingest(pipeline_id, records[start:start + batch], secret=secret,
                               wait="stored" if last else "durable", wait_timeout=120)


def board(platform: Any, widgets: list[dict[str, Any]], **extra: Any) -> str:
    board_id = f"win-{uuid.uuid4().hex[:6]}"
    platform.client.put_dashboard({"id": board_id, "title": "Windows", "widgets": widgets, **extra})
    return board_id


def chart_data(tab: Any, index: int = 0) -> dict[str, str]:
    return tab.page.evaluate("i => ({...document.querySelectorAll('.widget.line .chart')[i].dataset})", index)


def test_six_hours_of_24000_readings_show_every_reading(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(UTC)
    start = now - dt.timedelta(hours=6) + dt.timedelta(seconds=60)
    step = (dt.timedelta(hours=6) - dt.timedelta(seconds=120)) / 24_000
    seed(platform, pipeline_id, secret, [start + i * step for i in range(24_000)])
    assert platform.client.query(pipeline_id, start=now - dt.timedelta(hours=6), agg="count")[0]["count"] == 24_000
    board_id = board(platform, [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count", "title": "Readings"},
        {"kind": "line", "pipeline": pipeline_id, "agg": "count", "title": "Readings per bucket"},
        {"kind": "line", "pipeline": pipeline_id, "fields": ["temp_c"], "by": "device"}])
    tab.sign_in(platform.token, f"/dashboards/{board_id}?range=6h")
    tab.page.wait_for_selector(".stat-value[data-value='24000']")
    tab.page.wait_for_function("() => document.querySelector('.widget.line .chart').dataset.points > 0")
    counts = chart_data(tab, 0)
    step_s = int(counts["step"])
    # The first bucket with readings is where the window starts (no blank start), and the
    # buckets sum to every reading.
    assert int(counts["first"]) <= (now - dt.timedelta(hours=6)).timestamp() + 2 * step_s
    total = tab.page.evaluate("""() => {
        const w = window.dashDebug.widgets[1].box.querySelector('.chart');
        return Number(w.dataset.points); }""")
    assert total >= 6 * 3600 / step_s - 3
    by_device = chart_data(tab, 1)
    assert by_device["series"] == "sensor-0,sensor-1,sensor-2"
    tab.screenshot("6h")


def test_ninety_days_draw_true_aggregates(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    times = [now - dt.timedelta(hours=h) for h in range(1, 89 * 24)]
    seed(platform, pipeline_id, secret, times)
    expected = sum(range(len(times)))
    board_id = board(platform, [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "sum:n", "title": "Sum of n"},
        {"kind": "line", "pipeline": pipeline_id, "agg": "max:n", "title": "Max n"}])
    tab.sign_in(platform.token, f"/dashboards/{board_id}?range=90d")
    tab.page.wait_for_selector(f".stat-value[data-value='{expected}']")
    tab.page.wait_for_function("() => document.querySelector('.widget.line .chart').dataset.points > 0")
    data = chart_data(tab)
    step_s = int(data["step"])
    assert step_s >= 3600
    bucket = f"{step_s // 3600}h" if step_s % 86400 else f"{step_s // 86400}d"
    rows = platform.client.query(pipeline_id, start=now - dt.timedelta(days=90), agg="max:n", bucket=bucket)
    assert int(data["points"]) == len(rows)
    drawn = tab.page.evaluate("""() => {
        const u = window.dashDebug.widgets[1].chart();
        return u.data[1].filter(v => v !== null && v !== undefined); }""")
    assert drawn == [r["max_n"] for r in rows]
    tab.screenshot("90d")
