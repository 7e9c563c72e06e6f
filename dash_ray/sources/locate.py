"""Reading a polled response with the mapping's paths (`dash_ray.mapping.paths`): the records
of a page, one value of a body or a record, and the problems of a polling source's paths (for
`dash_ray.spec_check`, so a bad path is a 422 with the rest of the spec's problems)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dash_ray.errors import Problem
from dash_ray.mapping.paths import JsonPath, PathError, parse_path

__all__ = ["Locator", "path_problems"]

# The fields of a polling source (and of its parts) that hold paths.
_PATH_FIELDS = ("records", "primary_key", "cursor_path", "next_url_path", "total_path", "has_next_path")


class Locator:
    """One compiled path. `records(body)`: the list it points at (a wildcard's matches, an array,
    or a lone object as one record; nothing when missing). `value(doc)`: the single value
    (None when missing)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._path: JsonPath = parse_path(text)

    def value(self, doc: Any) -> Any:
        return self._path.extract([doc])[0]

    def records(self, body: Any) -> list[Any]:
        found = self.value(body)
        if found is None:
            return []
        return found if isinstance(found, list) else [found]


def path_problems(source: BaseModel) -> list[Problem]:
    """Each path of a `source` block (a polling kind's; other kinds have none) that does not
    parse, under its field path (`source.pagination.cursor_path`)."""
    problems: list[Problem] = []

    def walk(model: BaseModel, at: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{at}.{name}")
            elif name in _PATH_FIELDS and isinstance(value, str):
                try:
                    parse_path(value)
                except PathError as exc:
                    problems.append(Problem(f"{at}.{name}", exc.message, exc.position))

    walk(source, "source")
    return problems
