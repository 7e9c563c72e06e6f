"""The tree's shape (issues 14 and 23): imports flow `serve_app -> actors -> dash_ray` only,
inside `dash_ray` from a higher-ranked package to lower-ranked ones only (so packages form no
cycle either), no import cycles between modules (module-level or deferred), no module over 400
lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dash_ray", "actors", "serve_app")
ALLOWED = {"dash_ray": {"dash_ray"}, "actors": {"actors", "dash_ray"},
           "serve_app": {"serve_app", "actors", "dash_ray"}}
# The command line is the outermost layer: `dash-ray up` starts the web tier. It lives in the
# package for its console script, and imports serve_app only inside the commands that start
# or stop the platform.
OUTERMOST = {"dash_ray.cli.platform"}

# The rank order of `dash_ray`'s packages (a subpackage, or a module at the package's root), from
# the bottom up: a package imports only packages of lower tiers, never one of its own tier or
# above (module-level or deferred imports alike, `if TYPE_CHECKING:` ones too). A new package
# takes its place here; an import that runs back up means the code it needs sits too high, or
# the importer too low: move the code, not the rank.
RANKS: tuple[tuple[str, ...], ...] = (
    ("errors", "process_logging", "timeouts", "lake_listing"),  # raise, log, wait with; list a folder
    ("spec", "settings"),                                 # the spec every layer shares; settings read at the edge
    ("mapping", "lake", "log", "ingest", "auth", "dashboards", "deploy"),  # the core's parts
    ("silver", "lake_roots", "lake_owner", "sources", "catalog", "sinks"),  # silver; deploy checks; lake fencing; sinks
    ("query", "spec_check"),                              # reading silver rows; a spec checked whole
    ("lifecycle", "live"),                                # replay, compaction, retention; the live feed
    ("pipeline",),                                        # one pipeline's life, in plain Python
    ("supervision",),                                     # the registry's decisions
    ("registry",),                                        # what the registry actor serves, in plain Python
    ("client",),                                          # the SDK's client
    ("__init__",),                                        # the SDK's public names (`import dash_ray`)
    ("cli",),                                             # `dash-ray`, over the SDK
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports, anywhere in it (deferred imports count too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in modules:
                    out.add(name)
    return out


def test_imports_flow_from_the_web_tier_to_the_actors_to_the_core() -> None:
    modules = _modules()
    wrong = [f"{name} imports {target}" for name, path in modules.items()
             for target in _imports(path, modules)
             if name not in OUTERMOST and target.split(".")[0] not in ALLOWED[name.split(".")[0]]]
    assert wrong == []


def _rank_unit(module: str) -> str:
    """The package of `dash_ray` a module belongs to (`__init__` for the root's own module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _upward_imports(modules: dict[str, Path]) -> list[str]:
    """Imports in `dash_ray` from a package to one of its own tier or above, as text."""
    tier = {unit: i for i, units in enumerate(RANKS) for unit in units}
    wrong = []
    for name, path in sorted(modules.items()):
        if name.split(".")[0] != "dash_ray" or (source := _rank_unit(name)) not in tier:
            continue  # a package missing from RANKS fails the test below
        for target in sorted(_imports(path, modules)):
            if target.split(".")[0] != "dash_ray" or (goal := _rank_unit(target)) == source or goal not in tier:
                continue
            if tier[goal] >= tier[source]:
                wrong.append(f"{name} imports {target}: {source!r} (tier {tier[source]}) may not import "
                             f"{goal!r} (tier {tier[goal]})")
    return wrong


def test_dash_ray_packages_import_only_lower_ranked_ones() -> None:
    assert _upward_imports(_modules()) == []


def test_an_import_back_up_the_ranks_fails(tmp_path: Path) -> None:
    """The check sees an upward import wherever it is: at module level, deferred in a function,
    or for type checking only."""
    probe = tmp_path / "probe.py"
    probe.write_text("from __future__ import annotations\n"
                     "from typing import TYPE_CHECKING\n"
                     "from dash_ray.spec import PipelineSpec\n"
                     "if TYPE_CHECKING:\n    from dash_ray.pipeline.core import PipelineCore\n"
                     "def answer():\n    from dash_ray.query.model import parse_query\n"
                     "    import dash_ray.query.stores\n")
    modules = {**_modules(), "dash_ray.silver.probe": probe}
    assert _upward_imports(modules) == [
        "dash_ray.silver.probe imports dash_ray.pipeline.core: 'silver' (tier 3) may not import 'pipeline' (tier 6)",
        "dash_ray.silver.probe imports dash_ray.query.model: 'silver' (tier 3) may not import 'query' (tier 4)",
        "dash_ray.silver.probe imports dash_ray.query.stores: 'silver' (tier 3) may not import 'query' (tier 4)",
    ]


def test_the_rank_order_names_every_dash_ray_package_once() -> None:
    ranked = [unit for units in RANKS for unit in units]
    present = {_rank_unit(name) for name in _modules() if name.startswith("dash_ray")}
    assert sorted(u for u in set(ranked) if ranked.count(u) > 1) == []
    assert sorted(present - set(ranked)) == [], "add these packages to RANKS"
    assert sorted(set(ranked) - present) == [], "these packages are gone: take them out of RANKS"


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: {t for t in _imports(path, modules) if t != name and not name.startswith(t + ".")}
             for name, path in modules.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_page_preloads_each_of_its_modules() -> None:
    """index.html names every module of serve_app/static/js for preloading (the browser then
    fetches them at once, not one import level after another), and no module that is gone."""
    html = (ROOT / "serve_app" / "static" / "index.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/js/([a-z_]+\.js)">', html))
    assert preloaded == {p.name for p in (ROOT / "serve_app" / "static" / "js").glob("*.js")}
