"""The actors are shells (STYLE: logic in plain Python, Ray as a thin shell), checked without
Ray: the options each actor is made with, and every method a delegation of one or two
statements to a `dash_ray` object."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from actors.host import HostActor, host_options
from actors.pipeline import PipelineActor, actor_options
from actors.registry import REGISTRY_NAME, Registry, registry_options
from dash_ray.settings import PipelineSettings, Settings, ingestor_selector

ROOT = Path(__file__).resolve().parents[2]


def test_a_pipeline_actor_is_supervised_by_the_registry_not_restarted_by_ray() -> None:
    assert PipelineActor._default_options == {"num_cpus": 0, "max_restarts": 0, "max_concurrency": 10_000}
    settings = PipelineSettings(wal_root="/w", lake_url="/l", namespace="ns")
    assert actor_options("weather", settings) == {
        "name": "pipeline:weather", "namespace": "ns", "lifetime": "detached", "label_selector": ingestor_selector()}
    assert ingestor_selector() == {"dash.io/role": "in(ingestor,web-ingestor)"}
    # On the node the placement chose, else (that node gone) on any ingestor node.
    assert actor_options("weather", settings, node="n1") == {
        "name": "pipeline:weather", "namespace": "ns", "lifetime": "detached",
        "label_selector": {**ingestor_selector(), "ray.io/node-id": "n1"},
        "fallback_strategy": [{"label_selector": ingestor_selector()}]}


def test_a_shared_host_is_placed_as_a_pipeline_actor_and_not_restarted_by_ray() -> None:
    assert HostActor._default_options == {"num_cpus": 0, "max_restarts": 0, "max_concurrency": 100_000}
    settings = PipelineSettings(wal_root="/w", lake_url="/l", namespace="ns")
    assert host_options("host:3", settings) == {
        "name": "host:3", "namespace": "ns", "lifetime": "detached", "label_selector": ingestor_selector()}


def test_the_registry_is_restarted_by_ray_and_found_by_name(tmp_path: Path) -> None:
    assert Registry._default_options == {"num_cpus": 0, "max_restarts": -1, "max_concurrency": 1000}
    settings = Settings.from_env(env={}, home=str(tmp_path), namespace="ns")
    assert registry_options(settings) == {"name": REGISTRY_NAME, "namespace": "ns", "lifetime": "detached",
                                          "get_if_exists": True, "resources": {"node:__internal_head__": 0.001}}


def _methods(path: Path, name: str) -> dict[str, list[ast.stmt]]:
    [cls] = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef) and n.name == name]
    out = {}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            out[node.name] = body
    return out


@pytest.mark.parametrize(("module", "name"), [("actors/pipeline.py", "PipelineActor"),
                                              ("actors/host.py", "HostActor"),
                                              ("actors/registry.py", "Registry")])
def test_every_method_of_a_shell_is_a_short_delegation(module: str, name: str) -> None:
    methods = _methods(ROOT / module, name)
    long = {method: len(body) for method, body in methods.items() if len(body) > (4 if method == "__init__" else 2)}
    assert long == {}
