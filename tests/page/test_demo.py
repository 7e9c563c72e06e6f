"""`dash-ray up --demo` as a person meets it: the page at the printed URL, signed in with the
token from the printed place, opens the demo dashboard with every widget drawn from the demo's
live readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import dash, free_port
from tests.page.conftest import ARTIFACTS

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "demo-dashboard.png"

pytestmark = pytest.mark.ray


def test_up_demo_opens_with_a_live_demo_dashboard(browser, tmp_path: Path) -> None:
    home = tmp_path / ".dash"
    port = free_port()
    up = dash(home, port, "up", "--demo")
    context = None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}/dashboards/demo" in up.stdout
        token = (home / "admin.token").read_text().strip()
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://127.0.0.1:{port}/dashboards/demo")
        page.fill("#token", token)
        page.click("#login button")
        page.wait_for_function("() => document.body.dataset.ready === '/dashboards/demo'")
        assert page.inner_text("#dashboard-title") == "Demo sensors"
        assert page.locator("#widgets .widget").count() == 6
        page.wait_for_selector(".live-state[data-state=live]", timeout=15_000)
        # The demo makes 5 readings a second: the count grows while we watch.
        page.wait_for_function("() => Number(document.querySelectorAll('.stat-value')[1].dataset.value) > 0")
        first = int(page.locator(".stat-value").nth(1).get_attribute("data-value"))
        page.wait_for_function(f"() => Number(document.querySelectorAll('.stat-value')[1].dataset.value) > {first}",
                               timeout=5000)
        assert int(page.locator(".widget.line .chart").first.get_attribute("data-points")) > 0
        assert page.locator(".widget.bar .bar-row").count() == 3  # the demo's three sites
        assert page.locator(".widget.table tr[data-seq]").count() > 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-dashboard.png"), full_page=True)
        # The picture the README shows: made here, from the running demo (docs/demo-dashboard.png).
        page.wait_for_timeout(8000)  # a few more seconds of readings on the charts
        page.screenshot(path=str(DOCS_SHOT), full_page=True)
        assert errors == []
    finally:
        if context is not None:
            context.close()
        down = dash(home, port, "down")
    assert down.returncode == 0 and "Dash stopped" in down.stdout, down.stdout + down.stderr
