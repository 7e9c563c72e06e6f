"""Where a pipeline's own lake (`storage.lake` in its spec) may be: on durable storage, under a
root the operator allowed (`DASH_LAKE_ROOTS`, or the platform's lake), and apart from the
data of every other lake, so no pipeline can read, overwrite or purge another's files.

Paths are compared as written, after normalising (`/a/./b/` is `/a/b`, `file:///a` is `/a`);
symlinks are not resolved, since the folder may not exist on the node that checks.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dash_ray.errors import Problem, SpecError
from dash_ray.lake import Lake
from dash_ray.spec import PipelineSpec

__all__ = ["LakeRoots", "pipeline_lake"]

# A lake keeps each pipeline's files in <root>/<area>/<pipeline>/ (see dash_ray.lake).
_AREAS = ("bronze", "silver", "dead")
_WHERE = "storage.lake"


@dataclass(frozen=True)
class _Place:
    scheme: str
    parts: tuple[str, ...]

    def within(self, other: _Place) -> bool:
        """Equal to `other` or inside it."""
        return self.scheme == other.scheme and self.parts[: len(other.parts)] == other.parts

    def area(self, name: str) -> _Place:
        return _Place(self.scheme, (*self.parts, name))

    def __str__(self) -> str:
        path = "/".join(self.parts)
        return f"/{path}" if self.scheme == "file" else f"{self.scheme}://{path}"


def _place(url: str) -> _Place:
    """A lake URL as a scheme and its path's parts; ValueError for what is not one."""
    url = url.strip()
    if url.startswith("/"):
        scheme, rest = "file", url
    elif "://" in url:
        scheme, rest = url.split("://", 1)
        if scheme == "file":
            rest = "/" + rest.lstrip("/")
    else:
        raise ValueError(f"{url!r} is neither an absolute folder nor a URL")
    path = posixpath.normpath("/" + rest.lstrip("/"))
    parts = tuple(p for p in path.split("/") if p)
    if scheme == "s3" and not parts:
        raise ValueError(f"{url!r} names no bucket")
    return _Place(scheme, parts)


def _refuse(message: str) -> SpecError:
    return SpecError(problems=[Problem(_WHERE, message)])


@dataclass(frozen=True)
class LakeRoots:
    """The operator's rule for custom lakes: `platform_lake` (always allowed) and `roots`
    (folders or `s3://bucket/prefix`, from `DASH_LAKE_ROOTS`). A custom lake may be one of
    them or anywhere inside one."""

    platform_lake: str
    roots: tuple[str, ...] = ()

    def check(self, lake: str | None, *, others: Iterable[str] = ()) -> None:
        """Raise SpecError at `storage.lake` unless `lake` (a spec's `storage.lake`; None
        means the platform's lake) may be used beside `others`, the custom lakes of the other
        pipelines. Refused: a non-durable scheme (`memory://`), a place outside every allowed
        root, a place inside another lake's bronze/silver/dead areas (or holding another
        lake in its own), and a place inside or around another pipeline's custom lake (the
        same lake is fine: each pipeline keeps its own folders in it)."""
        if lake is None:
            return
        try:
            place = _place(lake)
        except ValueError as exc:
            raise _refuse(str(exc)) from None
        if place.scheme not in ("file", "s3"):
            raise _refuse(f"{lake} is not durable storage; give a folder or an s3:// URL")
        platform = _place(self.platform_lake)
        allowed = [platform, *(_place(root) for root in self.roots)]
        if not any(place.within(root) for root in allowed):
            listed = ", ".join(str(root) for root in allowed)
            raise _refuse(f"{lake} is not under a lake root this platform allows ({listed}); "
                          "the operator allows more with DASH_LAKE_ROOTS")
        customs = {_place(other) for other in others} - {place}
        for other in [platform, *sorted(customs, key=str)]:
            if other == place:
                continue
            for area in _AREAS:
                if place.within(other.area(area)):
                    raise _refuse(f"{lake} is inside the {area} area of the lake {other}")
                if other.within(place.area(area)):
                    raise _refuse(f"{lake} would hold the lake {other} in its {area} area")
            for inner, outer in ((place, other), (other, place)):
                # Rollup areas are named rollup-<granularity>-<plan> (dash_ray.lake).
                if inner.within(outer) and len(inner.parts) > len(outer.parts) and \
                        inner.parts[len(outer.parts)].startswith("rollup-"):
                    raise _refuse(f"{lake} overlaps a rollup area of the lake {outer}")
            if other in customs and (place.within(other) or other.within(place)):
                raise _refuse(f"{lake} overlaps the lake {other} of another pipeline; "
                              "use the same lake or one apart from it")


def pipeline_lake(spec: PipelineSpec, *, lake_url: str, lake_options: dict[str, Any] | None) -> Lake:
    """The one place that picks a pipeline's lake: its own when its spec names one (an
    `s3://` one with the platform's S3 options, endpoint and credentials), else the platform's."""
    if spec.storage.lake:
        own = spec.storage.lake
        return Lake.from_url(own, storage_options=lake_options if own.startswith("s3://") else None)
    return Lake.from_url(lake_url, storage_options=lake_options)
