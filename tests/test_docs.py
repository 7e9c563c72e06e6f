"""docs/API.md is the contract a clone carries: every route the web tier serves is in it (the
Starlette routes of `serve_app.app.build_app` and the ingest front's two POST routes), it
keeps the shared contract it extends, and the README links it rather than a file outside the
repository."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Mount, Route, WebSocketRoute

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "API.md"


def _served() -> set[str]:
    """`METHOD /path` of every route the app serves, path parameters written `{id}`."""
    from dash_ray.settings import WebSettings
    from serve_app import ingress
    from serve_app.app import build_app

    front = build_app(WebSettings())
    found: set[str] = set()

    def walk(routes: list, prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif isinstance(route, Route):
                for method in route.methods or ():
                    if method != "HEAD":
                        found.add(f"{method} {prefix}{route.path}")
            elif isinstance(route, WebSocketRoute):
                found.add(f"WS {prefix}{route.path}")

    app = front.app
    while not hasattr(app, "routes"):  # through the middleware (request ids)
        app = app.app
    walk(app.routes, "")
    found.update(f"POST {route}" for route in ingress.INGEST_ROUTES)
    # Path parameters are written {id} in the route table, but a secret's is {name}.
    return {re.sub(r"\{(?!name\})[a-z_]+\}", "{id}", route) for route in found}


def test_every_served_route_is_documented() -> None:
    text = API.read_text()
    served = _served()
    assert len(served) >= 18, served
    missing = sorted(route for route in served if f"`{route}`" not in text)
    assert not missing, f"routes served but not in docs/API.md: {missing}"


def test_the_route_table_lists_only_served_routes() -> None:
    table = API.read_text().split("## Routes served", 1)[1]
    listed = set(re.findall(r"^\| `([A-Z]+ /[^`]*)` \|", table, flags=re.MULTILINE))
    assert listed == _served()


def test_the_shared_contract_is_kept_and_extensions_are_marked() -> None:
    text = API.read_text()
    assert text.startswith("# Dash on Ray — public contract")
    extensions = text.split("# Extensions:", 1)[1]
    for needle in ("counters_at", "waiting_in_log", "next_restart_at", "rejected_count", "Dash-Query-Store",
                   "from_seq", "<pipeline>.<n>", "GET /v1/tokens", "signed with the same\n  timestamp is a replay",
                   "Sub-second signing times", "each retired secret's grace"):
        assert needle in extensions, needle
    assert extensions.count("[ext]") >= 20


def test_the_readme_links_the_contract_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/API.md" in readme
    assert "../shared/" not in readme


def test_the_contract_says_first_what_is_not_served_yet() -> None:
    """Issue 22 item 10: http_poll, sinks and /v1/secrets stood above the line saying they
    are not served. The note at the top says what is not (nothing, since issue 24)."""
    head = " ".join(API.read_text().split("## Tokens and secrets", 1)[0].replace("> ", "").split())
    assert "What this code serves" in head
    for name in ("does not serve yet: none now", '"not supported yet"', '"not served yet"'):
        assert name in head, name


def test_every_status_counter_and_widget_field_is_documented() -> None:
    """What `GET /v1/pipelines/{id}` carries in `counters` (with `totals`), and every field a
    dashboard widget takes, are named in the contract."""
    from dash_ray.dashboards import Widget
    from dash_ray.pipeline.counters import Counters
    from dash_ray.pipeline.totals import Totals

    text = API.read_text()
    named = set(re.findall(r"[a-z_]+", " ".join(re.findall(r"`([^`]*)`", text))))
    counters = set(Counters().as_dict()) | set(Totals().report(Counters())) | {"totals", "since"}
    assert counters - named == set()
    dashboards = text[text.index("## Dashboards [ext]"):text.index("## Operations [ext]")]
    fields = set(re.findall(r"`([a-z_]+)`", dashboards))
    assert set(Widget.model_fields) - fields == set()


def test_every_field_of_a_pipeline_status_is_documented() -> None:
    from dash_ray.spec import parse_spec
    from dash_ray.supervision.view import PipelineView
    from serve_app.bodies import pipeline_body

    body = pipeline_body(PipelineView("p", "running", 0, None, 1, parse_spec({"id": "p"})))
    text = API.read_text()
    assert {"node", "placement", "host"} <= set(body)
    # the shared contract's own (`id`, `status`, restarts, last error, `counters`, the spec) are
    # described in its words; every extension is named as it is sent
    contract = {"id", "status", "restarts", "last_error", "counters", "spec"}
    assert [field for field in body if field not in contract and f"`{field}`" not in text] == []


def test_page_sessions_are_documented_with_the_defaults_the_code_has() -> None:
    """Issue 26: the page's sign-in routes, the cross-site rule and both session lifetimes are
    in the contract and the README, with the defaults `SessionPolicy` has."""
    from dash_ray.settings import SessionPolicy, Settings

    policy = SessionPolicy()
    assert Settings.from_env(env={}, home="/tmp/x").session == policy
    api = " ".join(API.read_text().split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    section = api.split("## Page sessions [ext]", 1)[1].split("## ", 1)[0]
    for needle in ("`POST /v1/session`", "`DELETE /v1/session`", "HttpOnly", "SameSite=Strict", "`Origin`",
                   "DASH_ALLOWED_ORIGINS", f"`DASH_SESSION_IDLE_S` (default {policy.idle_s:.0f}",
                   f"`DASH_SESSION_MAX_S` (default {policy.max_s:.0f}", f"At most {policy.max_per_token} sessions"):
        assert needle in section, needle
    for needle in ("`DASH_SESSION_IDLE_S` (604800", "`DASH_SESSION_MAX_S` (2592000", "`DASH_ALLOWED_ORIGINS`",
                   "POST /v1/session"):
        assert needle in readme, needle
    assert "local storage" not in readme and "local storage" not in section  # the page keeps no token
