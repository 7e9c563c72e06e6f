"""Signing in, sharing and exporting in Chromium: one sign-in serves every tab of the browser
until "Sign out", and a revoked token signs the page out; the token is in no URL and no
console message; a widget's data downloads as CSV; a share link carries the range and the
variables."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from tests.page.test_windows import board, seed

pytestmark = pytest.mark.ray

UTC = dt.timezone.utc


def test_one_sign_in_per_browser_until_sign_out_or_revocation(tab, platform, pipeline) -> None:
    pipeline_id, _ = pipeline
    board_id = board(platform, [{"kind": "stat", "pipeline": pipeline_id, "agg": "count"}])
    read = platform.client.create_token("read", name="page-session")
    urls: list[str] = []
    console: list[str] = []
    context = tab.page.context
    context.on("request", lambda request: urls.append(request.url))
    context.on("console", lambda message: console.append(message.text))
    tab.page.on("websocket", lambda ws: urls.append(ws.url))
    tab.sign_in(platform.token, f"/dashboards/{board_id}")
    other = context.new_page()  # a new tab: signed in already
    other.on("websocket", lambda ws: urls.append(ws.url))
    other.goto(f"{platform.url}/pipelines/{pipeline_id}")
    other.wait_for_function(f"() => document.body.dataset.ready === '/pipelines/{pipeline_id}'")
    assert other.inner_text("#who") == "admin token"
    other.click("#forget")  # sign out: every tab's next load asks again
    other.wait_for_selector("#login")
    tab.page.reload()
    tab.page.wait_for_selector("#login")
    # A read token, revoked while the dashboard is open: the page asks to sign in again.
    tab.sign_in(read["token"], f"/dashboards/{board_id}")
    tab.page.wait_for_selector(".live-state[data-state=live]", timeout=15_000)
    platform.client.revoke_token(read["id"])
    tab.page.wait_for_selector("#login", timeout=30_000)
    assert "revoked" in tab.page.inner_text("#login-error")
    other.close()
    for token in (platform.token, read["token"]):
        assert not [url for url in urls if token in url], urls
        assert not [text for text in console if token in text], console


def test_csv_export_and_a_share_link(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    now = dt.datetime.now(UTC)
    seed(platform, pipeline_id, secret, [now - dt.timedelta(seconds=10 * i + 5) for i in range(30)])
    board_id = board(platform, [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count", "title": "Readings"},
        {"kind": "line", "pipeline": pipeline_id, "agg": "count"},
        {"kind": "bar", "pipeline": pipeline_id, "agg": "count", "by": "device"},
        {"kind": "table", "pipeline": pipeline_id, "fields": ["device", "n"], "limit": 5}],
        variables=[{"name": "device", "pipeline": pipeline_id, "field": "device"}])
    tab.sign_in(platform.token, f"/dashboards/{board_id}?range=1h&var-device=sensor-0,sensor-1")
    tab.page.wait_for_selector(".stat-value[data-value='20']")
    tab.page.wait_for_function("() => document.querySelector('.widget.line .chart').dataset.points > 0")

    def exported(kind: str) -> list[list[str]]:
        with tab.page.expect_download() as caught:
            tab.page.click(f".widget.{kind} button.csv")
        path = caught.value.path()
        assert caught.value.suggested_filename == f"{pipeline_id}-{kind}.csv"
        return list(csv.reader(io.StringIO(open(path, encoding="utf-8").read())))

    assert exported("stat") == [["count", "unit"], ["20", ""]]
    assert exported("bar") == [["device", "count"], ["sensor-0", "10"], ["sensor-1", "10"]]
    line = exported("line")
    assert line[0] == ["bucket", "count"] and sum(int(r[1]) for r in line[1:]) == 20
    assert all(r[0].endswith("Z") for r in line[1:])
    table = exported("table")
    assert table[0] == ["seq", "time", "device", "n"] and len(table) == 6
    assert {r[2] for r in table[1:]} <= {"sensor-0", "sensor-1"}
    tab.page.click("#share")
    link = tab.page.input_value("#share-link")
    assert "range=1h" in link and "var-device=sensor-0,sensor-1" in link and platform.token not in link
    # The link opens the same view in a new tab of the browser.
    other = tab.page.context.new_page()
    other.goto(link)
    other.wait_for_selector(".stat-value[data-value='20']")
    assert other.input_value("#range") == "1h"
    other.close()
