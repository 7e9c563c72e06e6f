"""Page sessions over HTTP and WebSocket on a real platform: `POST /v1/session` trades a token
for an HttpOnly, SameSite=Strict cookie holding an opaque id (never the token); the cookie
then works wherever a bearer token does, with the token's scope (read routes, admin routes,
live tickets, the live socket); a request made with it that may change something, and every
live handshake made with it, must show the platform's own origin (403 otherwise), while
bearer requests need no Origin; `DELETE /v1/session` ends it, and so does revoking its
token, at once on this replica, for its live sockets too."""

from __future__ import annotations

from contextlib import closing

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.serve_app.test_live import _collect, _deploy, _ingest

pytestmark = pytest.mark.ray

EVIL = "http://127.0.0.1:1"


def _signed_in(platform, token: str) -> tuple[httpx.Client, str]:
    """A client holding the session cookie of `token`, sending the page's Origin, and the id."""
    http = httpx.Client(base_url=platform.url, timeout=60, headers={"origin": platform.url})
    answer = http.post("/v1/session", json={"token": token})
    assert answer.status_code == 204, answer.text
    return http, http.cookies["dash_session"]


def test_signing_in_sets_an_opaque_httponly_strict_cookie(platform) -> None:
    with httpx.Client(base_url=platform.url, timeout=60) as http:
        answer = http.post("/v1/session", json={"token": platform.token}, headers={"origin": platform.url})
    assert answer.status_code == 204 and answer.headers["cache-control"] == "no-store"
    name_value, *attributes = answer.headers["set-cookie"].split("; ")
    name, value = name_value.split("=", 1)
    assert name == "dash_session" and value.startswith("dss_") and platform.token not in answer.headers["set-cookie"]
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=2592000"} <= set(attributes)
    assert "Secure" not in attributes  # plain http here
    with httpx.Client(base_url=platform.url, timeout=60) as http:
        behind_tls = http.post("/v1/session", json={"token": platform.token},
                               headers={"origin": platform.url, "x-forwarded-proto": "https"})
    assert "Secure" in behind_tls.headers["set-cookie"].split("; ")


def test_signing_in_is_refused_for_a_bad_token_or_from_another_site(platform) -> None:
    with httpx.Client(base_url=platform.url, timeout=60) as http:
        own = {"origin": platform.url}
        unknown = http.post("/v1/session", json={"token": "dash_0123456789ab_made-up"}, headers=own)
        assert unknown.status_code == 401 and "set-cookie" not in unknown.headers
        assert http.post("/v1/session", json={"nope": 1}, headers=own).status_code == 400
        for headers in ({"origin": EVIL}, {}, {"origin": "null"}):
            refused = http.post("/v1/session", json={"token": platform.token}, headers=headers)
            assert refused.status_code == 403 and "set-cookie" not in refused.headers, headers
            assert refused.json()["error"]["type"] == "ForbiddenError"


def test_the_cookie_reads_and_writes_with_its_tokens_scope(platform) -> None:
    reader = platform.client.create_token("read", name="session-reader")
    admin, _ = _signed_in(platform, platform.token)
    read, _ = _signed_in(platform, reader["token"])
    with closing(admin), closing(read):
        assert admin.get("/v1/whoami").json() == {"scope": "admin", "auth": "session"}
        assert read.get("/v1/whoami").json() == {"scope": "read", "auth": "session"}
        assert read.get("/v1/pipelines").status_code == 200
        assert read.put("/v1/secrets/session-one", json={"value": "x"}).status_code == 403
        made = admin.put("/v1/secrets/session-one", json={"value": "x"})
        assert made.status_code == 201, made.text
        assert admin.delete("/v1/secrets/session-one").status_code == 204
    with platform.http() as bearer:
        assert bearer.get("/v1/whoami").json() == {"scope": "admin", "auth": "bearer"}


def test_a_state_changing_request_with_the_cookie_must_come_from_the_page(platform) -> None:
    http, session_id = _signed_in(platform, platform.token)
    with closing(http):
        del http.headers["origin"]
        assert http.post("/v1/live-tickets", headers={"origin": platform.url}).status_code == 201
        assert http.post("/v1/live-tickets", headers={"referer": platform.url + "/dashboards"}).status_code == 201
        for headers in ({"origin": EVIL}, {}, {"origin": "null"}, {"referer": EVIL + "/x"}):
            refused = http.post("/v1/live-tickets", headers=headers)
            assert refused.status_code == 403, headers
            assert "origin" in refused.json()["error"]["message"].lower()
        refused = http.put("/v1/secrets/cross-site", json={"value": "x"}, headers={"origin": EVIL})
        assert refused.status_code == 403 and "cross-origin" in refused.json()["error"]["message"]
        assert http.get("/v1/pipelines").status_code == 200  # a read needs no Origin
    with platform.http() as bearer:  # a bearer token is no ambient credential: no Origin asked
        assert bearer.post("/v1/live-tickets", headers={"origin": EVIL}).status_code == 201


def test_the_live_socket_takes_the_cookie_from_the_page_only(platform) -> None:
    pipeline_id, secret = _deploy(platform)
    http, session_id = _signed_in(platform, platform.token)
    url = platform.url.replace("http://", "ws://") + f"/v1/pipelines/{pipeline_id}/live"
    cookie = {"cookie": f"dash_session={session_id}"}
    with closing(http), connect(url, additional_headers={**cookie, "origin": platform.url}, open_timeout=30) as ws:
        assert orjson.loads(ws.recv(timeout=30)) == {"seq": 0, "records": []}
        _ingest(platform, pipeline_id, secret, 0, 2)
        assert [r["seq"] for r in _collect(ws, 2)] == [1, 2]
    for headers in ({**cookie, "origin": EVIL}, cookie):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers, open_timeout=30)
        assert refused.value.response.status_code == 403
    # A ticket asked for with the cookie stands for the session.
    with httpx.Client(base_url=platform.url, timeout=60, headers={**cookie, "origin": platform.url}) as page:
        ticket = page.post("/v1/live-tickets").json()["ticket"]
    with connect(f"{url}?after=2&ticket={ticket}", open_timeout=30) as ws:
        assert orjson.loads(ws.recv(timeout=30)) == {"seq": 2, "records": []}


def test_sign_out_ends_the_session_and_clears_the_cookie(platform) -> None:
    http, session_id = _signed_in(platform, platform.token)
    with closing(http):
        cookie = {"cookie": f"dash_session={session_id}"}
        assert http.delete("/v1/session", headers={"origin": EVIL}).status_code == 403
        ended = http.delete("/v1/session")
        assert ended.status_code == 204
        assert ended.headers["set-cookie"].startswith("dash_session=;") and "Max-Age=0" in ended.headers["set-cookie"]
        with httpx.Client(base_url=platform.url, timeout=60) as again:
            answer = again.get("/v1/whoami", headers=cookie)
        assert answer.status_code == 401 and "sign in again" in answer.json()["error"]["message"]
        assert http.delete("/v1/session").status_code == 204  # signed out already: still fine


def test_revoking_the_token_ends_its_sessions_and_their_sockets(platform) -> None:
    pipeline_id, _ = _deploy(platform)
    reader = platform.client.create_token("read", name="session-revoked")
    first, first_id = _signed_in(platform, reader["token"])
    second, _ = _signed_in(platform, reader["token"])
    url = platform.url.replace("http://", "ws://") + f"/v1/pipelines/{pipeline_id}/live"
    headers = {"cookie": f"dash_session={first_id}", "origin": platform.url}
    with closing(first), closing(second), connect(url, additional_headers=headers, open_timeout=30) as ws:
        assert orjson.loads(ws.recv(timeout=30)) == {"seq": 0, "records": []}
        assert first.get("/v1/whoami").status_code == second.get("/v1/whoami").status_code == 200
        platform.client.revoke_token(reader["id"])
        assert first.get("/v1/whoami").status_code == second.get("/v1/whoami").status_code == 401
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)
        assert closed.value.rcvd.code == 4401
