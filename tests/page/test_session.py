"""Signing in, sharing and exporting in Chromium: one sign-in serves every tab of the browser
until "Sign out", and a revoked token signs the page out; the session is an HttpOnly cookie
the page's scripts cannot read, the token is in no URL, no console message and no storage;
another site's page cannot use the session (its POST and its live socket are refused); a
widget's data downloads as CSV; a share link carries the range and the variables."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

import httpx
import pytest

from tests.page.test_windows import board

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


# Another site's page: a "simple" POST (text/plain, no preflight) that would make an admin
# token if the session's cookie were taken from it, and a live socket.
_EVIL_PAGE = """<!doctype html><html><body><script>
window.tried = (async () => {
  const post = await fetch(%(url)s + "/v1/tokens", {method: "POST", credentials: "include",
                                                    body: JSON.stringify({scope: "admin", name: "cross-site"})})
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
    # What went on the wire, as Chromium's network layer saw it (the page itself may read nothing).
    sent: list[dict] = []
    answered: list[dict] = []
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on("Network.requestWillBeSentExtraInfo", lambda event: sent.append(event))
    cdp.on("Network.responseReceivedExtraInfo", lambda event: answered.append(event))
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(evil_site)
    tried = page.evaluate("() => window.tried")
    assert tried == {"post": "refused: Failed to fetch", "socket": "closed 1006"}, tried
    host = platform.url.split("://", 1)[1]
    to_platform = [e for e in sent if e["headers"].get("Host") == host]
    [post] = to_platform
    assert "dash_session=" in post["headers"]["Cookie"]  # the browser sent the session's cookie...
    assert [e["statusCode"] for e in answered if e["requestId"] == post["requestId"]] == [403]  # ...refused
    # The handshake was answered 403, never opened: only a cookie from another origin gets that
    # (without one the socket would open and close with 4401).
    assert [m for m in console if "WebSocket" in m and "403" in m], console
    assert "cross-site" not in [t["name"] for t in platform.client.tokens()]  # nothing was made
    cdp.detach()
    page.close()
    tab.open("/")  # the session is untouched for the platform's own page
    assert tab.page.inner_text("#who") == "admin token"
