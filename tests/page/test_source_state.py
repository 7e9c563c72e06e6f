"""A polling pipeline's page shows its source's state (last poll, last success, last error,
cursor, next poll), kept fresh while the page is open: here an API that fails, then recovers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.polled_api import PolledApi, Scripted, serving

pytestmark = pytest.mark.ray


def test_the_pipeline_page_shows_the_pollers_state_and_its_last_error(tab: Any, platform: Any) -> None:
    api = PolledApi(items=4)
    with serving(api):
        api.script = [Scripted(500, body=b'{"error": "upstream down"}')] * 2
        pipeline_id = f"page-poll-{uuid.uuid4().hex[:6]}"
        platform.client.deploy({
            "id": pipeline_id,
            "source": {"kind": "http_poll", "url": api.url + "/single", "records": "$.data", "primary_key": "$.id",
                       "interval": 1, "retries": 0, "backoff_initial": 0.1,
                       "incremental": {"cursor_path": "$.updated_at", "start_param": "since"}},
            "mapping": {"fields": {"id": {"path": "$.id", "type": "int"},
                                   "value": {"path": "$.value", "type": "string"}}},
        })
        try:
            platform.wait_for(lambda: (platform.client.get(pipeline_id).source_state or {}).get("failures"),
                              timeout=60, what="a failed poll")
            tab.sign_in(platform.token, f"/pipelines/{pipeline_id}")
            box = tab.page.wait_for_selector("#source-state:not([hidden])")
            assert "Source: http_poll" in box.inner_text()
            tab.page.wait_for_function(
                "() => document.querySelector('#source-state tr[data-key=cursor] td').textContent === '40'",
                timeout=60_000)  # the recovery, shown by the page's own refresh
            error = tab.page.inner_text("#source-state tr[data-key=last_error] td")
            assert "HTTP 500" in error and "upstream down" in error
            # next_poll_at is empty while a poll runs (every second here): wait for a refresh between polls.
            tab.page.wait_for_function(
                """() => ['last_poll_at', 'last_ok_at', 'next_poll_at'].every(key => {
                    const cell = document.querySelector(`#source-state tr[data-key=${key}] td`);
                    return cell && !['', '–'].includes(cell.textContent); })""", timeout=30_000)
        finally:
            platform.client.delete(pipeline_id)
