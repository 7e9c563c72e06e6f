"""State that does not lie, in Chromium: the overview's totals go on across a pipeline's
restart (its counters start again, and say since when); while the platform does not answer
(network errors, 5xx) the views say their state is stale and clear that when it answers."""

from __future__ import annotations

import re

import pytest

from tests.page.test_live import reading

pytestmark = pytest.mark.ray


def row_figures(tab, pipeline_id: str) -> dict[str, str]:
    row = tab.page.locator(f"#pipelines tr[data-pipeline='{pipeline_id}']")
    return {name: row.locator(f"td.{name}").inner_text() for name in ("records", "stored", "dead")}


def test_the_overview_totals_go_on_across_a_restart(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    bad = [{**reading(i), "temp": "hot"} for i in range(2)]
    platform.client.ingest(pipeline_id, [reading(i) for i in range(5)] + bad, secret=secret, wait="stored")
    before = platform.client.get(pipeline_id)
    assert before.counters["totals"]["dead"] == 2 and before.counters["dead"] == 2
    tab.sign_in(platform.token, "/")
    tab.page.wait_for_function("id => document.querySelector(`#pipelines tr[data-pipeline='${id}'] td.stored`)"
                               "?.textContent === '7'", arg=pipeline_id)
    assert row_figures(tab, pipeline_id) == {"records": "7", "stored": "7", "dead": "2"}
    platform.client.restart(pipeline_id)
    after = platform.wait_for(lambda: (p := platform.client.get(pipeline_id)).status == "running"
                              and p.counters.get("since") != before.counters["since"] and p,
                              what="the pipeline running again")
    # The process's own counters started again; the totals did not.
    assert after.counters["dead"] == 0 and after.counters["since"] > before.counters["since"]
    assert after.counters["totals"] == {**before.counters["totals"]}
    platform.client.ingest(pipeline_id, [reading(9), {**reading(10), "temp": "cold"}], secret=secret, wait="stored")
    tab.page.wait_for_function("id => document.querySelector(`#pipelines tr[data-pipeline='${id}'] td.stored`)"
                               "?.textContent === '9'", arg=pipeline_id, timeout=15_000)
    assert row_figures(tab, pipeline_id) == {"records": "9", "stored": "9", "dead": "3"}
    assert "totals since each pipeline was created" in tab.page.inner_text("#totals-note")
    tab.screenshot("after-restart")


def test_views_say_they_are_stale_while_the_platform_does_not_answer(tab, platform, pipeline) -> None:
    pipeline_id, _ = pipeline
    pill = f"#pipelines tr[data-pipeline='{pipeline_id}'] .status"
    tab.sign_in(platform.token, "/")
    assert tab.page.inner_text(pill) == "running"
    assert tab.page.locator("#stale").is_hidden()
    # The network fails: the pill says what it last saw, greyed, under a banner.
    tab.page.route("**/v1/**", lambda route: route.abort("connectionrefused"))
    banner = tab.page.wait_for_selector("#stale:not([hidden])", timeout=10_000)
    assert re.match(r"Stale since \d\d:\d\d:\d\d — reconnecting", banner.inner_text())
    assert tab.page.inner_text(pill) == "last seen running"
    greyed = tab.page.eval_on_selector(pill, "e => [getComputedStyle(e).color, getComputedStyle(e).fontStyle]")
    tab.screenshot("stale")
    # It answers again: all clear, no reload needed.
    tab.page.unroute("**/v1/**")
    tab.page.wait_for_selector("#stale", state="hidden", timeout=10_000)
    assert tab.page.inner_text(pill) == "running"
    assert tab.page.eval_on_selector(pill, "e => getComputedStyle(e).fontStyle") != greyed[1] == "italic"
    # A 5xx is the platform not answering too; on the pipeline's own page as well.
    tab.open(f"/pipelines/{pipeline_id}")
    assert tab.page.inner_text("#pipeline-status .status") == "running"
    tab.page.route(f"**/v1/pipelines/{pipeline_id}", lambda route: route.fulfill(
        status=503, content_type="application/json", body='{"error": {"message": "gateway restarting"}}'))
    tab.page.wait_for_selector("#stale:not([hidden])", timeout=10_000)
    assert "gateway restarting" in tab.page.inner_text("#stale")
    assert tab.page.inner_text("#pipeline-status .status") == "last seen running"
    tab.page.unroute(f"**/v1/pipelines/{pipeline_id}")
    tab.page.wait_for_selector("#stale", state="hidden", timeout=10_000)
    assert tab.page.inner_text("#pipeline-status .status") == "running"
    # Leaving a view while it is stale does not carry the mark to the next one.
    tab.page.route("**/v1/pipelines", lambda route: route.abort("connectionrefused"))
    tab.open("/")
    tab.page.wait_for_selector("#stale:not([hidden])", timeout=10_000)
    tab.page.click("header nav a[href='/dashboards']")  # still unreachable for the list
    tab.wait_ready("/dashboards")
    assert tab.page.eval_on_selector("#view", "v => v.classList.contains('stale')") is False
    tab.page.unroute("**/v1/pipelines")
