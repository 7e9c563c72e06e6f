"""Templates of sinks: text with `{field}` filled from a record, and nothing else. No code
runs: a placeholder is a plain name (no attribute, index or conversion: `{a.b}`, `{a[0]}`,
`{a!r}` are refused when the spec is checked), optionally with a format spec applied to the
value (`{temp_c:.1f}`; a spec that does not fit the value shows the value as it is). A field
the record lacks, or a null, fills in as the empty string. `{{` and `}}` are literal braces.

Names beginning with `_` are the sink's own: `_pipeline`, `_sink`, `_count` (records in the
message) and `_group` (the group's values, `a=1, b=x`)."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Template", "TemplateError"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MAX_VALUE_CHARS = 2000
# A format spec with at most three digits of width and two of precision (no fill that could
# make a huge string).
_SPEC = re.compile(r"^(?:.?[<>^=])?[+\- ]?#?0?\d{0,3}[,_]?(?:\.\d{1,2})?[bcdeEfFgGnosxX%]?$")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and placeholders, in order."""

    parts: tuple[tuple[str, str | None, str], ...]  # (literal, field or None, format spec)

    @classmethod
    def parse(cls, text: str) -> Template:
        """TemplateError saying what is wrong (an unmatched brace, a placeholder that is not
        a plain name)."""
        parts: list[tuple[str, str | None, str]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(f"template: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if field is None:
                parts.append((literal, None, ""))
                continue
            if conversion or not _NAME.match(field):
                raise TemplateError(f"template placeholder {{{field}}} is not a field name; "
                                    "give {name} or {name:format}")
            if spec and not _SPEC.match(spec):
                raise TemplateError(f"template placeholder {{{field}:{spec}}}: give a short format like "
                                    "'.1f', '>8' or ','")
            parts.append((literal, field, spec or ""))
        return cls(tuple(parts))

    def fields(self) -> list[str]:
        return [f for _, f, _ in self.parts if f is not None]

    def unknown(self, known: Iterable[str]) -> list[str]:
        """The placeholders naming neither a field in `known` nor one of the sink's own."""
        names = set(known)
        return [f for f in self.fields() if f not in names and not f.startswith("_")]

    def render(self, record: Mapping[str, Any]) -> str:
        out = []
        for literal, field, spec in self.parts:
            out.append(literal)
            if field is not None:
                out.append(_show(record.get(field), spec))
        return "".join(out)


def _show(value: Any, spec: str) -> str:
    if value is None:
        return ""
    if spec:
        try:
            return format(value, spec)[:_MAX_VALUE_CHARS]
        except (ValueError, TypeError):
            pass
    return str(value)[:_MAX_VALUE_CHARS]
