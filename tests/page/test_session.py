"""Signing in, sharing and exporting in Chromium: one sign-in serves every tab of the browser
until "Sign out", and a revoked token signs the page out; the session is an HttpOnly cookie
the page's scripts cannot read, the token is in no URL, no console message and no storage;
another site's page cannot use the session (its POST and its live socket are refused); a
widget's data downloads as CSV; a share link carries the range and the variables."""

from __future__ import annotations

import csv
import datetime as dt
import http.server
import io
import json
import threading

import httpx
import pytest

from tests.page.test_windows import board, seed

pytestmark = pytest.mark.ray

UTC = dt.timezone.utc


def _storage(page) -> str:
    return page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")


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
    # An earlier page kept the token in local storage: this one drops it on load.
    tab.page.goto(platform.url + "/")
    tab.page.evaluate("() => localStorage.setItem('dash.token', 'dash_old_left-behind')")
    tab.sign_in(platform.token, f"/dashboards/{board_id}")
    [cookie] = [c for c in context.cookies() if c["name"] == "dash_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["value"].startswith("dss_") and cookie["value"] != platform.token
    assert "dash_session" not in tab.page.evaluate("() => document.cookie")  # the page's scripts never see it
    assert platform.token not in _storage(tab.page) and "left-behind" not in _storage(tab.page)
    other = context.new_page()  # a new tab: signed in already
    other.on("websocket", lambda ws: urls.append(ws.url))
    other.goto(f"{platform.url}/pipelines/{pipeline_id}")
    other.wait_for_function(f"() => document.body.dataset.ready === '/pipelines/{pipeline_id}'")
    assert other.inner_text("#who") == "admin token"
    other.wait_for_selector(".live-state[data-state=live]", timeout=15_000)  # its socket goes with the cookie
    other.click("#forget")  # sign out: every tab's next load asks again
    other.wait_for_selector("#login")
    tab.page.reload()
    tab.page.wait_for_selector("#login")
    with httpx.Client(base_url=platform.url, timeout=60) as http:  # forgotten by the platform, not only the tab
        assert http.get("/v1/whoami", headers={"cookie": f"dash_session={cookie['value']}"}).status_code == 401
    # A read token, revoked while the dashboard is open: the page asks to sign in again.
    tab.sign_in(read["token"], f"/dashboards/{board_id}")
    tab.page.wait_for_selector(".live-state[data-state=live]", timeout=15_000)
    platform.client.revoke_token(read["id"])
    tab.page.wait_for_selector("#login", timeout=30_000)
    assert "revoked" in tab.page.inner_text("#login-error")
    other.reload()
    other.wait_for_selector("#login")
    other.close()
    for token in (platform.token, read["token"]):
        assert not [url for url in urls if token in url], urls
        assert not [text for text in console if token in text], console
        assert token not in _storage(tab.page)


_EVIL_PAGE = """<!doctype html><html><body><script>
window.tried = (async () => {
  const post = await fetch(%(url)s + "/v1/live-tickets", {method: "POST", credentials: "include"})
    .then(r => "answered " + r.status, e => "refused: " + e.message);
  const socket = await new Promise((done) => {
    const ws = new WebSocket(%(ws)s);
    ws.onopen = () => done("open");
    ws.onclose = (event) => done("closed " + event.code);
  });
  return {post, socket};
})();
</script></body></html>"""


@pytest.fixture()
def evil_site(platform, pipeline):
    """A page on another origin of the same site (127.0.0.1, another port): the session
    cookie goes with its requests, since cookies do not tell ports apart."""
    pipeline_id, _ = pipeline
    live = platform.url.replace("http://", "ws://") + f"/v1/pipelines/{pipeline_id}/live"
    body = (_EVIL_PAGE % {"url": json.dumps(platform.url), "ws": json.dumps(live)}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_another_sites_page_cannot_use_the_session(tab, platform, evil_site) -> None:
    tab.sign_in(platform.token)
    page = tab.page.context.new_page()
    answers: list[tuple[int, str]] = []
    failures: list[str] = []
    page.on("response", lambda r: answers.append((r.status, r.text())) if "/v1/live-tickets" in r.url else None)
    page.on("websocket", lambda ws: ws.on("socketerror", failures.append))
    page.goto(evil_site)
    tried = page.evaluate("() => window.tried")
    assert tried["socket"] == "closed 1006"  # the handshake was refused, never opened
    assert tried["post"].startswith("refused")  # and the page could not read the answer
    [(status, text)] = answers
    assert status == 403 and "cross-origin request refused" in text  # the cookie went, and was refused
    assert failures and "403" in failures[0], failures
    page.close()
    tab.open("/")  # the session is untouched for the platform's own page
    assert tab.page.inner_text("#who") == "admin token"


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
