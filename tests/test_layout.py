"""The tree's shape (issue 14): imports flow `serve_app -> actors -> dash_ray` only, no import
cycles between modules (module-level or deferred), no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dash_ray", "actors", "serve_app")
ALLOWED = {"dash_ray": {"dash_ray"}, "actors": {"actors", "dash_ray"},
           "serve_app": {"serve_app", "actors", "dash_ray"}}
# The command line is the outermost layer: `dash-ray up` starts the web tier. It lives in the
# package for its console script, and imports serve_app only inside the commands that start
# or stop the platform.
OUTERMOST = {"dash_ray.cli.platform"}


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
