"""The web tier speaks one vocabulary (issue 23): one parser of pipeline paths, one `requires`
for the routes' token checks, one module of request helpers (none borrowed privately across
modules), actors called through their typed clients only and found by the names in
`actors/names.py`, one predicate for which errors are answered as they are, and no module
named like a standard-library one. Read from the source, as tests/test_layout.py reads it."""

from __future__ import annotations

import ast
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVE_APP = ROOT / "serve_app"


def _trees() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(SERVE_APP.glob("*.py"))}


def _where(module: str, node: ast.AST) -> str:
    return f"serve_app/{module}.py:{getattr(node, 'lineno', '?')}"


def test_pipeline_paths_are_parsed_in_one_place() -> None:
    """The prefixes and suffixes of `/v1/pipelines/{id}/…` and `/v1/hooks/{id}` are spelled in
    `requests.py` only; the fronts and the log context ask its `pipeline_route`."""
    pieces = {"/v1/pipelines/", "/v1/hooks/", "/events", "/live"}
    found = [f"{_where(name, node)} {node.value!r}" for name, tree in _trees().items() if name != "requests"
             for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in pieces]
    assert found == []


def test_routes_check_tokens_through_requires() -> None:
    """A request's credential (its bearer token or page session) is checked by the gateway's
    `check`, called by `requires` for every route, by the live socket (not a Request: its
    credential may be a ticket) and by the gateway's own `recheck`; nowhere else. (Before issue
    26 the three called `authorize`, which takes a bearer token only; `check` calls it.)"""
    calls: dict[str, int] = {}
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("check", "authorize")):
                calls[name] = calls.get(name, 0) + 1
    assert calls == {"requests": 1, "live": 1, "gateway": 2}


def test_no_private_name_is_borrowed_across_modules() -> None:
    borrowed = [f"{_where(name, node)} {node.module}.{alias.name}" for name, tree in _trees().items()
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("serve_app.")
                for alias in node.names if alias.name.startswith("_")]
    assert borrowed == []


def test_request_helpers_live_in_one_module() -> None:
    helpers = {"read_body", "read_bounded", "json_body", "spec_body", "int_param", "requires", "pipeline_route"}
    defined = {(name, node.name.lstrip("_")) for name, tree in _trees().items() for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.lstrip("_") in helpers}
    assert {name for name, _ in defined} == {"requests"}, sorted(defined)
    assert {helper for _, helper in defined} == helpers


def test_actors_are_called_through_their_typed_clients_only() -> None:
    """`.remote(...)` (a Ray call) only in the registry's and the pipeline's clients, and in the
    driver that starts and stops the platform (`startup.py`, synchronous)."""
    calling = {name for name, tree in _trees().items() for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "remote"}
    assert calling == {"registry_client", "pipeline_client", "startup"}


def test_actors_are_found_by_the_names_in_actors_names() -> None:
    imports = [(name, node) for name, tree in _trees().items() for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("actors.")]
    assert [_where(name, node) for name, node in imports if node.module == "actors.pipeline"] == []
    names = {"REGISTRY_NAME", "actor_name"}
    assert [_where(name, node) for name, node in imports
            if node.module != "actors.names" and names & {alias.name for alias in node.names}] == []


def test_one_predicate_says_which_errors_are_answered_as_they_are() -> None:
    """`status < 500` (the client's to fix) is written once, in `responses.is_answer`."""
    found = [_where(name, node) for name, tree in _trees().items() for node in ast.walk(tree)
             if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "status"
             and any(isinstance(c, ast.Constant) and c.value == 500 for c in node.comparators)]
    assert len(found) == 1 and found[0].startswith("serve_app/responses.py"), found


def test_the_pipeline_client_answers_with_dataclasses() -> None:
    from dash_ray.ingest.channel import Endpoint
    from dash_ray.lifecycle.jobstore import Job
    from dash_ray.live.feed import LiveRead
    from serve_app.pipeline_client import PipelineClient

    hints = {name: typing.get_type_hints(getattr(PipelineClient, name))["return"]
             for name in ("endpoint", "live_read", "replay", "replay_dead", "job")}
    assert hints == {"endpoint": Endpoint, "live_read": LiveRead, "replay": Job, "replay_dead": Job, "job": Job}


def test_no_module_is_named_like_a_standard_library_module() -> None:
    """`serve_app/platform.py` read as the standard library's `platform` (it starts and stops
    the platform: `startup.py`)."""
    assert sorted(p.stem for p in SERVE_APP.glob("*.py") if p.stem in sys.stdlib_module_names) == []
