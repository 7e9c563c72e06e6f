"""Browser fixtures: the Debian Chromium (`/usr/bin/chromium`, or `$DASH_TEST_CHROMIUM`;
`apt-get install -y chromium`, which `.ci/run` does) driven by Playwright, one browser for the
session and a fresh context per test; a screenshot of each test's page is saved in the
artefacts folder, `$DASH_TEST_ARTIFACTS` or `tests/artifacts/` (ignored by git). Without
Chromium every page test fails, before any platform starts, saying how to install it."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
INSTALL_CHROMIUM = "sudo apt-get install -y chromium"
ARTIFACTS = Path(os.environ.get("DASH_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")

pytestmark = pytest.mark.ray


def chromium_executable() -> str:
    """The Chromium the page tests drive; fails (never skips) saying how to install it."""
    path = os.environ.get("DASH_TEST_CHROMIUM") or CHROMIUM
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"the page tests need Chromium at {path}: install it with `{INSTALL_CHROMIUM}` (Debian, "
                    "Ubuntu; .ci/run does it), or set DASH_TEST_CHROMIUM to a Chromium or Chrome executable",
                    pytrace=False)
    return path


@pytest.fixture(scope="session", autouse=True)
def chromium() -> str:
    """Checked first (an autouse session fixture is set up before the session's platform), so
    a missing browser fails each page test at once."""
    return chromium_executable()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """Chromium for one module. Not for the session: Playwright's sync API keeps its event
    loop marked running on the main thread until it stops, and every later test that runs an
    event loop (asyncio.run, pytest-asyncio) would then fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class Browsing:
    """One test's tab on the platform: sign in, go to a path, save a screenshot; JavaScript
    errors on the page fail the test."""

    def __init__(self, page: Any, url: str, name: str) -> None:
        self.page = page
        self.url = url
        self.name = name
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def sign_in(self, token: str, path: str = "/") -> None:
        self.page.goto(self.url + path)
        self.page.fill("#token", token)
        self.page.click("#login button")
        self.page.wait_for_selector("#who:not([hidden])")
        self.wait_ready(path)

    def open(self, path: str) -> None:
        self.page.goto(self.url + path)
        self.wait_ready(path)

    def wait_ready(self, path: str) -> None:
        self.page.wait_for_function("p => document.body.dataset.ready === p", arg=path.split("?")[0])

    def screenshot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        # Written whole, then renamed: another run of the suite saving the same test's picture
        # at once leaves one of the two, never a mix.
        draft = path.with_name(f".{uuid.uuid4().hex}-{path.name}")
        self.page.screenshot(path=str(draft), full_page=True)
        os.replace(draft, path)
        return path


@pytest.fixture()
def tab(browser: Any, platform: Any, request: pytest.FixtureRequest) -> Iterator[Browsing]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)
    browsing = Browsing(context.new_page(), platform.url, name)
    try:
        yield browsing
        browsing.screenshot("end")
        assert browsing.errors == [], f"JavaScript errors on the page: {browsing.errors}"
    finally:
        context.close()


FIELDS = {
    "time": {"path": "$.ts", "type": "timestamp"},
    "device": {"path": "$.device", "type": "string"},
    "temp_c": {"path": "$.temp", "type": "double"},
    "n": {"path": "$.n", "type": "int"},
}


@pytest.fixture()
def pipeline(platform: Any) -> Iterator[tuple[str, str]]:
    """A push pipeline of readings (time, device, temp_c, n): its id and ingest secret."""
    created = platform.client.deploy({"id": f"page-{uuid.uuid4().hex[:6]}", "mapping": {"fields": FIELDS},
                                      "flush": {"records": 100_000, "seconds": 1.0}})
    platform.wait_for(lambda: platform.client.get(created.id).status == "running", what="pipeline running")
    yield created.id, created.ingest_secret
    platform.client.delete(created.id)
