"""The dashboard editor in Chromium: the id field's pattern works there; creating an id that
exists is refused (412) and changes nothing; the form adds, reorders and removes widgets in
step with the text, with a live preview; Cancel asks before unsaved changes are lost; a
definition that cannot be read is explained in words."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.page.test_live import reading

pytestmark = pytest.mark.ray


def test_the_id_pattern_works_and_an_existing_id_is_not_overwritten(tab, platform, pipeline) -> None:
    pipeline_id, _ = pipeline
    console: list[str] = []
    tab.page.on("console", lambda message: console.append(message.text))
    taken = f"taken-{uuid.uuid4().hex[:6]}"
    platform.client.put_dashboard({"id": taken, "title": "Keep me", "widgets": [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count"}]})
    tab.sign_in(platform.token, "/new/dashboard")
    validity = tab.page.evaluate("""() => {
        const input = document.querySelector('#dashboard-id');
        return ['Bad Id', 'ops-1', '1ops', 'ok'].map(v => { input.value = v; return input.checkValidity(); }); }""")
    assert validity == [False, True, False, True]
    assert not [m for m in console if "pattern" in m.lower()], console
    tab.page.fill("#dashboard-id", taken)
    tab.page.click("#save-dashboard")
    message = tab.page.wait_for_selector("#save-result .error").inner_text()
    assert "exists already" in message and taken in message
    assert platform.client.dashboard(taken).title == "Keep me" and platform.client.dashboard(taken).version == 1


def test_the_form_editor_with_preview_cancel_and_readable_errors(tab, platform, pipeline) -> None:
    pipeline_id, secret = pipeline
    platform.client.ingest(pipeline_id, [reading(i) for i in range(4)], secret=secret, wait="stored")
    board_id = f"form-{uuid.uuid4().hex[:6]}"
    tab.sign_in(platform.token, "/dashboards")
    tab.page.click("#new-dashboard")
    tab.wait_ready("/new/dashboard")
    tab.page.fill("#dashboard-id", board_id)
    # Start from nothing: remove the template's widgets, then add two.
    while tab.page.locator(".widget-form").count():
        tab.page.locator(".widget-form .w-remove").first.click()
    tab.page.fill("#form-title", "Made with the form")
    tab.page.click("#add-widget")
    tab.page.click("#add-widget")
    first, second = tab.page.locator(".widget-form").nth(0), tab.page.locator(".widget-form").nth(1)
    first.locator(".w-pipeline").select_option(pipeline_id)
    tab.page.locator(".widget-form").nth(0).locator(".w-title").fill("Readings")
    second = tab.page.locator(".widget-form").nth(1)
    second.locator(".w-pipeline").select_option(pipeline_id)
    tab.page.locator(".widget-form").nth(1).locator(".w-kind").select_option("line")
    tab.page.locator(".widget-form").nth(1).locator(".w-fn").select_option("max")
    tab.page.locator(".widget-form").nth(1).locator(".w-agg-field").select_option("temp_c")
    tab.page.locator(".widget-form").nth(1).locator(".w-unit").fill("°C")
    tab.page.locator(".widget-form").nth(1).locator(".w-up").click()
    text = json.loads(tab.page.input_value("#dashboard-text"))
    assert text["title"] == "Made with the form"
    assert [(w["kind"], w.get("agg"), w.get("unit")) for w in text["widgets"]] == [
        ("line", "max:temp_c", "°C"), ("stat", "count", None)]
    # The preview draws the widgets over the data.
    tab.page.wait_for_selector("#preview .stat-value[data-value='4']")
    tab.page.wait_for_selector("#preview .widget.line .chart[data-points='1']")
    # The text drives the form too.
    text["widgets"][1]["title"] = "Count"
    tab.page.fill("#dashboard-text", json.dumps(text))
    assert tab.page.locator(".widget-form").nth(1).locator(".w-title").input_value() == "Count"
    # Cancel asks first: dismissed, the editor stays.
    tab.page.once("dialog", lambda dialog: dialog.dismiss())
    tab.page.click("#cancel-edit")
    assert tab.page.locator("#dashboard-text").count() == 1
    # Text that cannot be read is explained, not dumped.
    tab.page.fill("#dashboard-text", "title: [unclosed\nwidgets: {")
    tab.page.click("#save-dashboard")
    message = tab.page.wait_for_selector("#save-result .error").inner_text()
    assert message.startswith("The definition could not be read: line") and "punctuation" in message
    tab.page.fill("#dashboard-text", json.dumps(text))
    tab.page.click("#save-dashboard")
    tab.wait_ready(f"/dashboards/{board_id}")
    saved = platform.client.dashboard(board_id)
    assert [w["kind"] for w in saved.widgets] == ["line", "stat"] and saved.widgets[0]["unit"] == "°C"
    # Editing again and cancelling with the changes accepted goes back to the dashboard.
    tab.page.click("#edit-dashboard")
    tab.wait_ready(f"/dashboards/{board_id}/edit")
    tab.page.fill("#form-title", "Changed")
    tab.page.once("dialog", lambda dialog: dialog.accept())
    tab.page.click("#cancel-edit")
    tab.wait_ready(f"/dashboards/{board_id}")
    assert platform.client.dashboard(board_id).title == "Made with the form"
