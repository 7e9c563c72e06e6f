"""Dashboards in a real browser: one made in the page survives a reload; one deployed from
YAML with the CLI shows up with its widgets drawn from live data; a read token sees
dashboards but cannot change them."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import dash
from tests.page.test_live import reading

pytestmark = pytest.mark.ray


def test_a_dashboard_made_in_the_page_survives_a_reload(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    platform.client.ingest(pipeline_id, [{**reading(i), "device": f"d{i % 2}", "temp": 10 + i} for i in range(6)],
                           secret=secret)
    board_id = f"made-{uuid.uuid4().hex[:6]}"
    tab.sign_in(platform.token, "/dashboards")
    tab.page.click("#new-dashboard")
    tab.page.wait_for_selector("#dashboard-text")
    tab.page.fill("#dashboard-id", board_id)
    tab.page.fill("#dashboard-text", json.dumps({"title": "Made in the page", "widgets": [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count", "title": "Readings"},
        {"kind": "bar", "pipeline": pipeline_id, "agg": "max:temp_c", "by": "device"}]}))
    tab.page.click("#save-dashboard")
    tab.wait_ready(f"/dashboards/{board_id}")
    tab.page.wait_for_selector(".stat-value[data-value='6']")
    tab.page.reload()
    tab.wait_ready(f"/dashboards/{board_id}")
    assert tab.page.inner_text("#dashboard-title") == "Made in the page"
    tab.page.wait_for_selector(".stat-value[data-value='6']")
    bars = tab.page.locator(".bar-row").evaluate_all("rows => rows.map(r => [r.dataset.key, r.lastChild.textContent])")
    assert bars == [["d0", "14"], ["d1", "15"]]
    tab.screenshot("made")
    tab.open("/dashboards")
    assert tab.page.locator(f"#dashboards li[data-dashboard='{board_id}']").count() == 1
    assert platform.client.dashboard(board_id).title == "Made in the page"
    # Edit it in the page: the definition comes back as JSON, and a change is saved.
    tab.page.click(f"#dashboards li[data-dashboard='{board_id}'] a")
    tab.wait_ready(f"/dashboards/{board_id}")
    tab.page.click("#edit-dashboard")
    tab.wait_ready(f"/dashboards/{board_id}/edit")
    definition = json.loads(tab.page.input_value("#dashboard-text"))
    assert definition["title"] == "Made in the page" and len(definition["widgets"]) == 2
    tab.page.fill("#dashboard-text", json.dumps({**definition, "title": "Edited"}))
    tab.page.click("#save-dashboard")
    tab.wait_ready(f"/dashboards/{board_id}")
    assert tab.page.inner_text("#dashboard-title") == "Edited"
    assert platform.client.dashboard(board_id).version == 2
    # And delete it (after the browser's confirmation).
    tab.page.once("dialog", lambda dialog: dialog.accept())
    tab.page.click("#delete-dashboard")
    tab.wait_ready("/dashboards")
    assert tab.page.locator(f"#dashboards li[data-dashboard='{board_id}']").count() == 0
    assert board_id not in [d.id for d in platform.client.dashboards()]


def test_a_bad_dashboard_shows_each_problem_with_its_path(tab, platform, pipeline) -> None:
    pipeline_id, _ = pipeline
    tab.sign_in(platform.token, "/new/dashboard")
    tab.page.fill("#dashboard-id", "bad-board")
    tab.page.fill("#dashboard-text", f"title: Bad\nwidgets:\n  - kind: stat\n    pipeline: {pipeline_id}\n"
                                     f"    agg: avg:device\n")
    tab.page.click("#save-dashboard")
    problem = tab.page.wait_for_selector("#save-result .problems li")
    assert problem.inner_text().startswith("widgets.0.agg: avg needs an int or double field")


def test_a_dashboard_deployed_from_yaml_shows_up(tab, platform, pipeline, tmp_path) -> None:
    pipeline_id, secret = pipeline
    board_id = f"yaml-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "dashboard.yaml"
    path.write_text(f"""kind: dashboard
id: {board_id}
title: From YAML
widgets:
  - kind: line
    pipeline: {pipeline_id}
    fields: [temp_c]
    by: device
    window: 15m
  - kind: table
    pipeline: {pipeline_id}
    fields: [device, temp_c]
    limit: 5
""")
    deployed = dash(tmp_path / "home", 0, "deploy", str(path), DASH_URL=platform.url, DASH_TOKEN=platform.token)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.strip() == f"dashboard {board_id}: saved (version 1)"
    platform.client.ingest(pipeline_id, [reading(1, device="a"), reading(2, device="b")],
                           secret=secret)
    tab.sign_in(platform.token, "/dashboards")
    tab.page.click(f"#dashboards li[data-dashboard='{board_id}'] a")
    tab.wait_ready(f"/dashboards/{board_id}")
    tab.page.wait_for_selector(".widget.table tr[data-seq='2']")
    chart = tab.page.wait_for_selector(".widget.line .chart[data-points='2']")
    assert chart is not None
    legend = tab.page.locator(".widget.line .u-legend .u-series th").all_inner_texts()
    assert [t.strip() for t in legend[1:]] == ["a", "b"]
    platform.client.ingest(pipeline_id, reading(3, device="c"), secret=secret)
    tab.page.wait_for_selector(".widget.table tr[data-seq='3']", timeout=2000)
    tab.screenshot("yaml")


def test_a_read_token_can_look_but_not_edit(tab, platform, pipeline) -> None:
    pipeline_id, _ = pipeline
    board_id = f"ro-{uuid.uuid4().hex[:6]}"
    platform.client.put_dashboard({"id": board_id, "title": "Read only",
                                   "widgets": [{"kind": "table", "pipeline": pipeline_id}]})
    read = platform.client.create_token("read", name="page-test")
    tab.sign_in(read["token"], f"/dashboards/{board_id}")
    assert tab.page.inner_text("#who") == "read token"
    assert tab.page.inner_text("#dashboard-title") == "Read only"
    assert not tab.page.is_visible("#edit-dashboard") and not tab.page.is_visible("#delete-dashboard")
    tab.open("/dashboards")
    assert not tab.page.is_visible("#new-dashboard")
    tab.open(f"/dashboards/{board_id}/edit")
    assert "can view dashboards but not change them" in tab.page.inner_text("#read-only")
    # Even a change sent by hand is refused, and the page says why in words.
    message = tab.page.evaluate("""async (id) => {
        const { api, explain } = await import('/static/js/api.js');
        try { await api('PUT', `/v1/dashboards/${id}`, { body: 'title: Changed' }); return 'saved'; }
        catch (err) { return `${err.status} ${explain(err)}`; }
    }""", board_id)
    assert message.startswith("403 This token cannot do that") and "admin" in message
    assert platform.client.dashboard(board_id).title == "Read only"
    platform.client.revoke_token(read["id"])


def test_the_overview_lists_pipelines_with_their_rate(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    tab.sign_in(platform.token, "/")
    row = f"#pipelines tr[data-pipeline='{pipeline_id}']"
    tab.page.wait_for_selector(row)
    for i in range(8):
        platform.client.ingest(pipeline_id, [reading(i, device="x")] * 10, secret=secret,
                               idempotency_key=f"ov-{i}")
        # A pace, not a wait: records keep arriving across the overview's refreshes, between
        # which the page measures the rate.
        tab.page.wait_for_timeout(400)
    tab.page.wait_for_function(f"() => parseFloat(document.querySelector(\"{row} .rate\").textContent) > 0",
                               timeout=5000)
    # The list's counters are those of the last health round: they catch up within a round or two.
    tab.page.wait_for_function(f"() => document.querySelector(\"{row}\").children[4].textContent === '80'",
                               timeout=5000)
    cells = tab.page.locator(f"{row} td").all_inner_texts()
    # records, stored, dead (totals), restarts: `stored` follows within a flush (1 s).
    assert cells[0] == pipeline_id and cells[1] == "running" and cells[6] == "0" and cells[7] == "0"
    tab.screenshot("overview")
