"""The page's vendored uPlot (serve_app/static/vendor/uplot/) is the release it says it is:
each file has the SHA-256 recorded beside it in SHA256SUMS (taken from `npm pack uplot@1.6.32`),
its MIT licence is there, and the page loads only files the sums cover.

To update uPlot: `npm pack uplot@<version>`, copy dist/uPlot.iife.min.js, dist/uPlot.min.css
and LICENSE here, run `sha256sum uPlot.iife.min.js uPlot.min.css LICENSE > SHA256SUMS`, and
change VERSION and VERSION_LINE below."""

from __future__ import annotations

import hashlib
import re

from serve_app.page import STATIC_DIR

UPLOT = STATIC_DIR / "vendor" / "uplot"
VERSION_LINE = "uPlot 1.6.32 from npm (npm pack uplot): dist/uPlot.iife.min.js, dist/uPlot.min.css, LICENSE (MIT)."
# Our own notes in the folder, not part of the release.
NOTES = {"VERSION", "SHA256SUMS"}


def recorded() -> dict[str, str]:
    sums = {}
    for line in (UPLOT / "SHA256SUMS").read_text().splitlines():
        digest, name = re.fullmatch(r"([0-9a-f]{64})  (\S+)", line).groups()  # type: ignore[union-attr]
        sums[name] = digest
    return sums


def test_every_vendored_file_has_the_recorded_sha256() -> None:
    sums = recorded()
    assert sorted(sums) == ["LICENSE", "uPlot.iife.min.js", "uPlot.min.css"]
    assert {p.name for p in UPLOT.iterdir()} == set(sums) | NOTES, "a file in the folder the sums do not cover"
    for name, digest in sums.items():
        assert hashlib.sha256((UPLOT / name).read_bytes()).hexdigest() == digest, f"{name} is not the recorded release"


def test_the_licence_and_version_are_there() -> None:
    licence = (UPLOT / "LICENSE").read_text()
    assert licence.startswith("The MIT License (MIT)") and "Leon Sorokin" in licence
    assert (UPLOT / "VERSION").read_text().splitlines()[0] == VERSION_LINE
    # The script's own first line says which release it is.
    assert (UPLOT / "uPlot.iife.min.js").read_text().startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")


def test_the_page_loads_only_what_the_sums_cover() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    vendored = re.findall(r'(?:src|href)="/static/vendor/uplot/([^"]+)"', html)
    assert sorted(vendored) == ["uPlot.iife.min.js", "uPlot.min.css"]
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "the page loads something from another origin"
