"""A pipeline's page lists its sinks with their state and last error (issue 24)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.ray


def test_the_pipeline_page_shows_each_sink_with_its_state_and_last_error(tab, platform) -> None:
    # Nothing listens on this port: every delivery fails with a connection error.
    down = f"http://127.0.0.1:{free_port()}/hook"
    created = platform.client.deploy({
        "id": f"page-sinks-{uuid.uuid4().hex[:6]}", "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}},
        "sinks": [{"name": "down-hook", "kind": "webhook", "url": down, "batch": {"max_wait": 0.05},
                   "retry": {"schedule": [60]}}]})
    try:
        platform.wait_for(lambda: platform.client.get(created.id).status == "running", what="pipeline running")
        platform.client.ingest(created.id, [{"n": 1}], secret=created.ingest_secret)
        tab.sign_in(platform.token, f"/pipelines/{created.id}")
        row = "#sinks tr[data-sink='down-hook']"
        tab.page.wait_for_selector(row)
        tab.page.wait_for_function(f"() => document.querySelector(\"{row} td.error\").textContent.includes('Connect')",
                                   timeout=15_000)
        cells = tab.page.locator(f"{row} td").all_inner_texts()
        assert cells[:2] == ["down-hook", "webhook"] and cells[5] == "1"  # one failed attempt
        tab.screenshot("sinks")
    finally:
        platform.client.delete(created.id)
