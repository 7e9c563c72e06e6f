"""Widget sizes in Chromium: the editor's form sets a widget's width (columns of 12) and height
(rows of 100 px), its preview follows, a drag on a preview widget's corner resizes it too; the
sizes are saved in the definition and the dashboard keeps them after a reload; on a 390 px phone
every widget stacks without sideways overflow."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.page.test_live import reading

pytestmark = pytest.mark.ray


def boxes(tab, grid: str) -> list[dict]:
    return tab.page.eval_on_selector_all(f"{grid} > .widget", """nodes => nodes.map(n => ({
        w: n.dataset.w, h: n.dataset.h || null, width: n.getBoundingClientRect().width,
        height: n.getBoundingClientRect().height, grid: n.parentElement.clientWidth}))""")


def test_resize_in_the_form_and_by_dragging_then_save_and_reload(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    platform.client.ingest(pipeline_id, [reading(i) for i in range(3)], secret=secret, wait="stored")
    board_id = f"size-{uuid.uuid4().hex[:6]}"
    platform.client.put_dashboard({"id": board_id, "title": "Sizes", "widgets": [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count"},
        {"kind": "line", "pipeline": pipeline_id, "fields": ["temp_c"]}]})
    tab.page.set_viewport_size({"width": 1400, "height": 900})
    tab.sign_in(platform.token, f"/dashboards/{board_id}")
    tab.page.wait_for_selector("#widgets .stat-value[data-value='3']")
    # Without sizes: four columns of twelve each, as tall as their content.
    plain = boxes(tab, "#widgets")
    assert [(b["w"], b["h"]) for b in plain] == [("4", None), ("4", None)]
    tab.open(f"/dashboards/{board_id}/edit")
    first = tab.page.locator(".widget-form").nth(0)
    first.locator(".w-width").select_option("6")
    first.locator(".w-height").select_option("2")
    assert json.loads(tab.page.input_value("#dashboard-text"))["widgets"][0] == {
        "kind": "stat", "pipeline": pipeline_id, "agg": "count", "fields": [], "window": "15m", "limit": 20,
        "w": 6, "h": 2}
    tab.page.wait_for_selector("#preview > .widget[data-w='6'][data-h='2']")
    # Drag the line widget's corner two columns right and to about three rows tall.
    line = tab.page.locator("#preview > .widget.line")
    line.wait_for()
    handle = line.locator(".resize-handle").bounding_box()
    grid = tab.page.locator("#preview").bounding_box()
    column = grid["width"] / 12
    top = line.bounding_box()["y"]
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    tab.page.mouse.move(x, y)
    tab.page.mouse.down()
    tab.page.mouse.move(x + column, y + 5, steps=3)
    tab.page.mouse.move(x + 2 * column, top + 300, steps=3)
    tab.page.mouse.up()
    second = tab.page.locator(".widget-form").nth(1)
    tab.page.wait_for_function("() => document.querySelectorAll('.widget-form .w-width')[1].value === '6'")
    assert second.locator(".w-height").input_value() == "3"
    widgets = json.loads(tab.page.input_value("#dashboard-text"))["widgets"]
    assert [(w.get("w"), w.get("h")) for w in widgets] == [(6, 2), (6, 3)]
    tab.page.wait_for_selector("#preview > .widget.line[data-w='6'][data-h='3']")
    tab.page.click("#save-dashboard")
    tab.wait_ready(f"/dashboards/{board_id}")
    saved = platform.client.dashboard(board_id)
    assert [(w.get("w"), w.get("h")) for w in saved.widgets] == [(6, 2), (6, 3)]
    tab.page.reload()
    tab.wait_ready(f"/dashboards/{board_id}")
    tab.page.wait_for_selector("#widgets .stat-value[data-value='3']")
    tab.page.wait_for_selector("#widgets .widget.line canvas")
    sized = boxes(tab, "#widgets")
    assert [(b["w"], b["h"]) for b in sized] == [("6", "2"), ("6", "3")]
    assert [round(b["height"]) for b in sized] == [200, 300]
    for box, before in zip(sized, plain, strict=True):
        assert abs(box["width"] - (box["grid"] - 16) / 2) < 2  # half the row, beside each other
        assert box["width"] > before["width"] * 1.4
    canvas = tab.page.eval_on_selector("#widgets .widget.line canvas", "c => c.getBoundingClientRect().height")
    assert 150 <= canvas <= 200
    fits = tab.page.eval_on_selector("#widgets .widget.line", """box => [...box.querySelectorAll('.u-legend, .note')]
        .every(n => n.getBoundingClientRect().bottom <= box.getBoundingClientRect().bottom)""")
    assert fits, "the chart's legend and note fit in the widget's height"
    tab.screenshot("sized")
    # A phone: every widget the screen's width, one under another, nothing sideways.
    tab.page.set_viewport_size({"width": 390, "height": 844})
    tab.page.wait_for_timeout(300)
    phone = boxes(tab, "#widgets")
    assert all(abs(b["width"] - b["grid"]) < 1 for b in phone), phone
    assert tab.page.evaluate("() => document.documentElement.scrollWidth") <= 390
    tops = tab.page.eval_on_selector_all("#widgets > .widget", "ns => ns.map(n => n.getBoundingClientRect().top)")
    assert tops == sorted(tops) and len(set(tops)) == len(tops)
    tab.screenshot("phone")
