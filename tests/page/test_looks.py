"""How the page looks in Chromium: dark when the system prefers it, with a toggle kept per
browser; nothing wider than a 390 px phone on any view; stat cards as tall as their content;
an empty dashboard says what to do."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.page.test_windows import board, seed

pytestmark = pytest.mark.ray

UTC = dt.timezone.utc
DARK_BG = "rgb(15, 18, 23)"
LIGHT_BG = "rgb(246, 247, 249)"


def background(tab) -> str:
    return tab.page.evaluate("() => getComputedStyle(document.body).backgroundColor")


def test_dark_theme_follows_the_system_and_the_toggle(tab, platform, pipeline) -> None:
    pipeline_id, _ = pipeline
    tab.page.emulate_media(color_scheme="dark")
    board_id = board(platform, [{"kind": "stat", "pipeline": pipeline_id, "agg": "count"}])
    tab.sign_in(platform.token, f"/dashboards/{board_id}")
    assert background(tab) == DARK_BG and tab.page.inner_text("#theme") == "Theme: auto"
    for _ in range(2):  # switching the time zone (there and back) leaves the theme toggle as it was
        tab.page.click("#zone")
        tab.wait_ready(f"/dashboards/{board_id}")
    tab.page.click("#theme")  # dark: one step per click
    tab.wait_ready(f"/dashboards/{board_id}")
    assert tab.page.inner_text("#theme") == "Theme: dark"
    tab.page.click("#theme")  # light, whatever the system says
    tab.wait_ready(f"/dashboards/{board_id}")
    assert background(tab) == LIGHT_BG and tab.page.inner_text("#theme") == "Theme: light"
    tab.page.reload()  # kept for this browser
    tab.wait_ready(f"/dashboards/{board_id}")
    assert background(tab) == LIGHT_BG
    tab.page.click("#theme")  # auto again: the system's dark
    tab.wait_ready(f"/dashboards/{board_id}")
    assert background(tab) == DARK_BG
    tab.page.emulate_media(color_scheme="light")
    assert background(tab) == LIGHT_BG
    tab.page.emulate_media(color_scheme="dark")
    tab.screenshot("dark")


def test_nothing_overflows_a_phone_and_cards_fit_their_content(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(UTC)
    seed(platform, pipeline_id, secret, [now - dt.timedelta(seconds=4 * i + 2) for i in range(60)])
    board_id = board(platform, [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count", "title": "Readings"},
        {"kind": "line", "pipeline": pipeline_id, "fields": ["temp_c"], "by": "device", "unit": "°C"},
        {"kind": "bar", "pipeline": pipeline_id, "agg": "avg:temp_c", "by": "device"},
        {"kind": "table", "pipeline": pipeline_id, "limit": 5}],
        variables=[{"name": "device", "pipeline": pipeline_id, "field": "device"}])
    empty = board(platform, [])
    tab.page.set_viewport_size({"width": 390, "height": 844})
    tab.sign_in(platform.token, f"/dashboards/{board_id}")
    tab.page.wait_for_selector(".stat-value[data-value='60']")
    tab.page.wait_for_function("() => document.querySelector('.widget.line .chart').dataset.points > 0")
    paths = ["/", f"/pipelines/{pipeline_id}", "/dashboards",
             f"/dashboards/{board_id}?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
             f"/dashboards/{board_id}/edit", "/new/dashboard", f"/dashboards/{empty}"]
    widths = {}
    for path in [f"/dashboards/{board_id}", *paths]:
        tab.open(path)
        tab.page.wait_for_timeout(300)
        widths[path] = tab.page.evaluate("() => document.documentElement.scrollWidth")
    assert all(w <= 390 for w in widths.values()), widths
    tab.screenshot("phone")
    # At a desktop width a stat card is as tall as its number, not as its row's chart.
    tab.page.set_viewport_size({"width": 1280, "height": 900})
    tab.open(f"/dashboards/{board_id}")
    tab.page.wait_for_selector(".stat-value[data-value='60']")
    heights = tab.page.evaluate("() => ['stat', 'line'].map(k => document.querySelector(`.widget.${k}`).offsetHeight)")
    assert heights[0] < heights[1] / 2, heights
    tab.open(f"/dashboards/{empty}")
    assert "no widgets yet" in tab.page.inner_text("#empty-dashboard")
