"""The tree's names (issue 23): every folder of code is a package, a module is not named
for the package it sits in, no two siblings are one word in singular and plural, and the
SDK's and the CLI's modules live in their packages, not beside the core's."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dash_ray", "actors", "serve_app")


def _folders() -> list[Path]:
    return [folder for package in PACKAGES for folder in [ROOT / package, *(ROOT / package).rglob("*")]
            if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))]


def _stem(name: str) -> str:
    return name.removesuffix(".py")


def test_every_folder_of_modules_is_a_package() -> None:
    bare = [str(f.relative_to(ROOT)) for f in _folders() if not (f / "__init__.py").exists()]
    assert bare == []


def test_no_module_is_named_for_its_package() -> None:
    """`catalog/catalog.py` says nothing the folder does not: name it for what it holds."""
    same = [str(p.relative_to(ROOT)) for f in _folders() for p in f.glob("*.py") if _stem(p.name) == f.name]
    assert same == []


def test_no_siblings_are_one_word_in_singular_and_plural() -> None:
    """`logs.py` beside `log/` reads as one concept; they were two (logging, the write-ahead log)."""
    clashes = []
    for folder in _folders():
        names = {_stem(p.name) for p in folder.iterdir() if p.name != "__pycache__" and
                 (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
        clashes += [f"{folder.relative_to(ROOT)}: {n} / {n}s" for n in sorted(names) if n + "s" in names]
    assert clashes == []


def test_the_sdk_and_the_cli_are_packages() -> None:
    """The client's and the CLI's modules are `dash_ray/client/` and `dash_ray/cli/`, not
    satellites at the package root."""
    satellites = sorted(p.name for p in (ROOT / "dash_ray").glob("*.py")
                        if p.name.startswith(("cli", "client")) or
                        p.name in ("answers.py", "stream.py", "transport.py", "discovery.py"))
    assert satellites == []
    assert (ROOT / "dash_ray" / "client" / "__init__.py").exists()
    assert (ROOT / "dash_ray" / "cli" / "__init__.py").exists()


def test_the_public_entry_points_still_resolve() -> None:
    """What README and docs/API.md name, and the console script, keep working."""
    import importlib
    import re

    import dash_ray
    from dash_ray.client import Client, ClientSettings, Dashboard, IngestResult, Pipeline, connect

    assert dash_ray.Client is Client and dash_ray.connect is connect
    assert dash_ray.Pipeline is Pipeline and dash_ray.IngestResult is IngestResult
    assert ClientSettings().retries >= 0 and Dashboard.__name__ == "Dashboard"
    script = re.search(r'^dash-ray = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert script is not None
    module, _, attr = script.group(1).partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
