"""A chart's value axis in Chromium: its tick labels have as many decimals as their step needs,
so a narrow range (a max temperature between 25.60 and 25.68) reads as different numbers."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.page.test_windows import board

pytestmark = pytest.mark.ray


def test_value_ticks_on_a_narrow_range_differ(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(dt.timezone.utc)
    records = [{"ts": (now - dt.timedelta(seconds=20 * i + 5)).isoformat(), "device": "sensor-1",
                "temp": round(25.6 + (i % 9) * 0.01, 2), "n": i} for i in range(40)]
    platform.client.ingest(pipeline_id, records, secret=secret, wait="stored", wait_timeout=120)
    board_id = board(platform, [{"kind": "line", "pipeline": pipeline_id, "agg": "max:temp_c",
                                 "title": "Max temperature", "unit": "°C"}])
    tab.sign_in(platform.token, f"/dashboards/{board_id}?range=15m")
    tab.page.wait_for_function("() => document.querySelector('.widget.line .chart').dataset.points > 0")
    labels = tab.page.evaluate("() => window.dashDebug.widgets[0].chart().axes[1]._values")
    assert len(labels) >= 3, labels
    assert len(set(labels)) == len(labels), f"value axis labels repeat: {labels}"
    # Each label is its tick's value, to the decimals shown.
    splits = tab.page.evaluate("() => window.dashDebug.widgets[0].chart().axes[1]._splits")
    decimals = len(labels[0].partition(".")[2])
    assert all(len(label.partition(".")[2]) == decimals for label in labels), labels
    assert [float(label.replace(",", "")) for label in labels] == [round(s, decimals) for s in splits]
