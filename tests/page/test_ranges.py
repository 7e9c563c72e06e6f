"""A dashboard's time range, series and variables in Chromium: the range is in the URL and
shared by every widget; dragging across a chart zooms (the URL changes), a double-click goes
back to live; pause holds the numbers still; series split by a field are named in the legend,
a hover shows every series' value and moves the cursor of every chart; one time zone for the
page; an outage is a gap; a variable filters every widget; units show on numbers."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.page.test_windows import board, seed

pytestmark = pytest.mark.ray

UTC = dt.timezone.utc


def query_of(tab: Any) -> dict[str, list[str]]:
    return parse_qs(urlparse(tab.page.url).query)


def drawn(tab: Any, selector: str = ".widget.line .chart") -> None:
    tab.page.wait_for_function(f"() => [...document.querySelectorAll('{selector}')].every(c => c.dataset.points > 0)")


def test_zoom_back_to_live_absolute_ranges_and_pause(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(UTC)
    seed(platform, pipeline_id, secret, [now - dt.timedelta(seconds=5 * i + 5) for i in range(600)])
    board_id = board(platform, [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count", "title": "Readings"},
        {"kind": "line", "pipeline": pipeline_id, "agg": "count", "title": "Per bucket"},
        {"kind": "line", "pipeline": pipeline_id, "fields": ["temp_c"], "by": "device", "unit": "°C"}])
    tab.sign_in(platform.token, f"/dashboards/{board_id}?range=1h")
    tab.page.wait_for_selector(".stat-value[data-value='600']")
    drawn(tab)
    assert tab.page.input_value("#range") == "1h"
    step = int(tab.page.get_attribute(".widget.line .chart", "data-step"))
    # Drag across the middle of the first chart: the URL gets that absolute range.
    box = tab.page.locator(".widget.line .u-over").first.bounding_box()
    y = box["y"] + box["height"] / 2
    tab.page.mouse.move(box["x"] + box["width"] * 0.4, y)
    tab.page.mouse.down()
    tab.page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    tab.page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    tab.page.mouse.up()
    tab.page.wait_for_function("() => new URLSearchParams(location.search).has('from')")
    tab.wait_ready(f"/dashboards/{board_id}")
    params = query_of(tab)
    start, end = (dt.datetime.fromisoformat(params[k][0].replace("Z", "+00:00")) for k in ("from", "to"))
    assert dt.timedelta(minutes=8) < end - start < dt.timedelta(minutes=16) and "range" not in params
    assert now - dt.timedelta(minutes=40) < start < now - dt.timedelta(minutes=15)
    drawn(tab)
    assert int(tab.page.get_attribute(".widget.line .chart", "data-step")) < step
    assert tab.page.is_visible("#back-to-live") and not tab.page.is_visible("#pause")
    counted = int(tab.page.get_attribute(".stat-value", "data-value"))
    expected = platform.client.query(pipeline_id, start=start, end=end, agg="count")[0]["count"]
    assert counted == expected
    # A double-click on a chart goes back to the live range the tab showed.
    tab.page.locator(".widget.line .u-over").first.dblclick()
    tab.page.wait_for_function("() => new URLSearchParams(location.search).get('range') === '1h'")
    tab.wait_ready(f"/dashboards/{board_id}")
    # An absolute range typed in (the page's zone: UTC here).
    tab.page.click("#zone") if tab.page.get_attribute("#zone", "data-zone") != "utc" else None
    tab.wait_ready(f"/dashboards/{board_id}")
    tab.page.select_option("#range", "custom")
    a, b = now - dt.timedelta(minutes=30), now - dt.timedelta(minutes=20)
    tab.page.fill("#range-from", a.strftime("%Y-%m-%dT%H:%M"))
    tab.page.fill("#range-to", b.strftime("%Y-%m-%dT%H:%M"))
    tab.page.click("#range-apply")
    tab.page.wait_for_function("() => new URLSearchParams(location.search).has('to')")
    tab.wait_ready(f"/dashboards/{board_id}")
    assert query_of(tab)["from"] == [a.strftime("%Y-%m-%dT%H:%M:00.000Z")]
    expected = platform.client.query(pipeline_id, start=a.replace(second=0, microsecond=0),
                                     end=b.replace(second=0, microsecond=0), agg="count")[0]["count"]
    tab.page.wait_for_selector(f".stat-value[data-value='{expected}']")
    tab.page.click("#back-to-live")
    tab.page.wait_for_function("() => new URLSearchParams(location.search).get('range') === '1h'")
    tab.wait_ready(f"/dashboards/{board_id}")
    tab.page.wait_for_selector(".stat-value[data-value='600']")
    tab.page.wait_for_selector(".live-state[data-state=live]", timeout=15_000)
    # Paused, new readings wait; resumed, they count.
    tab.page.click("#pause")
    platform.client.ingest(pipeline_id, [{"ts": dt.datetime.now(UTC).isoformat(), "device": "sensor-0", "temp": 1,
                                          "n": 1}] * 3, secret=secret)
    tab.page.wait_for_timeout(2500)
    assert tab.page.get_attribute(".stat-value", "data-value") == "600"
    tab.page.click("#pause")
    tab.page.wait_for_selector(".stat-value[data-value='603']", timeout=10_000)


def test_series_hover_sync_zone_and_gaps(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(UTC)
    # Readings every 5 s for 30 minutes, with a 10-minute outage in the middle.
    times = [now - dt.timedelta(seconds=5 * i + 3) for i in range(360) if not 120 <= i < 240]
    seed(platform, pipeline_id, secret, times)
    board_id = board(platform, [
        {"kind": "line", "pipeline": pipeline_id, "fields": ["temp_c"], "by": "device", "unit": "°C"},
        {"kind": "line", "pipeline": pipeline_id, "agg": "count"},
        {"kind": "table", "pipeline": pipeline_id, "limit": 3}])
    tab.sign_in(platform.token, f"/dashboards/{board_id}?range=30m")
    drawn(tab)
    chart = ".widget.line .chart"
    assert tab.page.get_attribute(chart, "data-series") == "sensor-0,sensor-1,sensor-2"
    legend = tab.page.locator(".widget.line").first.locator(".u-legend .u-series th").all_inner_texts()
    assert [t.strip() for t in legend] == ["time", "sensor-0", "sensor-1", "sensor-2"]
    # The outage is a gap: a null between the values before and after it, none inside it.
    data = tab.page.evaluate("() => window.dashDebug.widgets[0].chart().data")
    outage = (now - dt.timedelta(seconds=5 * 240)).timestamp(), (now - dt.timedelta(seconds=5 * 120)).timestamp()
    for values in data[1:]:
        inside = [v for x, v in zip(data[0], values, strict=True) if outage[0] + 60 < x < outage[1] - 60]
        assert all(v is None or v != v for v in inside) and None in inside
    # Hover the middle of the recent half: every series' value, with its unit, in both charts.
    box = tab.page.locator(".widget.line .u-over").first.bounding_box()
    tab.page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    values = tab.page.locator(".widget.line").first.locator(".u-legend .u-series td.u-value").all_inner_texts()
    assert len(values) == 4 and all(v.endswith("°C") for v in values[1:]), values
    other = tab.page.locator(".widget.line").nth(1).locator(".u-legend .u-series td.u-value").all_inner_texts()
    assert other[0] == values[0] and other[1] != "–"  # the same time, under the synced cursor
    # One zone: UTC chosen, the table and the axis in ISO dates of UTC.
    if tab.page.get_attribute("#zone", "data-zone") != "utc":
        tab.page.click("#zone")
        tab.wait_ready(f"/dashboards/{board_id}")
    assert tab.page.inner_text("#zone") == "Times: UTC"
    newest = max(times)
    tab.page.wait_for_selector(".widget.table tr[data-seq]")
    first_time = tab.page.locator(".widget.table tbody tr td").nth(1).inner_text()
    assert first_time == newest.strftime("%Y-%m-%d %H:%M:%S")
    assert re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", values[0]) or values[0] == "–"
    tab.page.click("#zone")
    tab.wait_ready(f"/dashboards/{board_id}")
    assert tab.page.inner_text("#zone").startswith("Times: local (UTC")


def test_the_pipeline_page_splits_series_by_a_field(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(UTC)
    seed(platform, pipeline_id, secret, [now - dt.timedelta(seconds=2 * i + 1) for i in range(30)])
    tab.sign_in(platform.token, f"/pipelines/{pipeline_id}")
    chart = ".chart[data-field=temp_c]"
    tab.page.wait_for_function(f"() => document.querySelector('{chart}').dataset.points === '30'")
    assert tab.page.get_attribute(chart, "data-series") == "temp_c"
    tab.page.select_option("#split", "device")
    tab.page.wait_for_function("() => new URLSearchParams(location.search).get('by') === 'device'")
    tab.wait_ready(f"/pipelines/{pipeline_id}")
    tab.page.wait_for_function(f"() => document.querySelector('{chart}').dataset.points === '30'")
    assert tab.page.get_attribute(chart, "data-series") == "sensor-0,sensor-1,sensor-2"


def test_a_variable_filters_every_widget_and_units_show(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(UTC)
    seed(platform, pipeline_id, secret, [now - dt.timedelta(seconds=3 * i + 2) for i in range(90)])
    board_id = board(platform, [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count", "title": "Readings"},
        {"kind": "stat", "pipeline": pipeline_id, "agg": "max:temp_c", "unit": "°C", "title": "Hottest"},
        {"kind": "bar", "pipeline": pipeline_id, "agg": "count", "by": "device"},
        {"kind": "line", "pipeline": pipeline_id, "fields": ["temp_c"], "by": "device", "unit": "°C"},
        {"kind": "table", "pipeline": pipeline_id, "fields": ["device"], "limit": 50}],
        variables=[{"name": "device", "pipeline": pipeline_id, "field": "device"}])
    tab.sign_in(platform.token, f"/dashboards/{board_id}?range=15m")
    tab.page.wait_for_selector(".stat-value[data-value='90']")
    options = tab.page.locator("#var-device option").all_inner_texts()
    assert options == ["all", "sensor-0", "sensor-1", "sensor-2"]
    hottest = platform.client.query(pipeline_id, agg="max:temp_c")[0]["max_temp_c"]
    assert tab.page.locator(".stat-value").nth(1).inner_text() == f"{hottest:g} °C"
    assert tab.page.get_attribute(".widget.line .chart", "data-series") == "sensor-0,sensor-1,sensor-2"
    tab.page.select_option("#var-device", "sensor-1")
    tab.page.wait_for_function("() => new URLSearchParams(location.search).get('var-device') === 'sensor-1'")
    tab.wait_ready(f"/dashboards/{board_id}")
    tab.page.wait_for_selector(".stat-value[data-value='30']")
    assert tab.page.locator(".bar-row").evaluate_all("rows => rows.map(r => r.dataset.key)") == ["sensor-1"]
    drawn(tab)
    assert tab.page.get_attribute(".widget.line .chart", "data-series") == "sensor-1"
    devices = set(tab.page.locator(".widget.table tbody tr td:nth-child(3)").all_inner_texts())
    assert devices == {"sensor-1"}
    assert "range=15m" in tab.page.url  # the range stays as the variable changes
    # A link with two values (a shared link) filters to both.
    tab.open(f"/dashboards/{board_id}?range=15m&var-device=sensor-0,sensor-2")
    tab.page.wait_for_selector(".stat-value[data-value='60']")
