"""The JSONPath subset a mapping field reads from: `$`, `.name`, `['odd name']`, `[n]`, `[-n]`, `[*]`.

Grammar (positions in errors are 1-based characters of the path text):

    path  := "$" step*
    step  := "." name | "." "*" | "[" index "]" | "[" "*" "]" | "[" quoted "]"
    name  := one or more letters, digits, "_", "-", "$" or "@" (Unicode letters count)
    index := an optional "-" then decimal digits
    quoted:= '...' or "..." where a backslash escapes the quote or a backslash

Evaluation on a parsed record (plain Python values from orjson):
- a key on anything but an object, an index on anything but an array, or an index out of range
  is *missing*; missing and JSON null are the same thing to the mapping (the field's default);
- `[-1]` is the last element, `[-2]` the one before;
- `[*]` (or `.*`) visits every element of an array or every value of an object, in order; the steps
  after it apply to each, and what they miss is skipped. A wildcard path yields a list of the
  matches (JSON nulls that match are kept), or *missing* when nothing matches (an empty array too);
- an object with a repeated key keeps the last value (as orjson parses it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

__all__ = ["ALL_KEYS", "Extractor", "Index", "JsonPath", "Key", "PathError", "Wildcard", "extract_all", "parse_path"]

MAX_PATH_LENGTH = 1024
MAX_STEPS = 32
# The top-level keys a path reads, when it reads every one (`$`, `$[*]`, `$.*`).
ALL_KEYS = "*"

_NAME = re.compile(r"[\w$@-]+")
_INDEX = re.compile(r"-?[0-9]+")


class PathError(ValueError):
    """A path that does not parse; `position` is the 1-based character where it goes wrong."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Key:
    name: str


@dataclass(frozen=True, slots=True)
class Index:
    index: int


@dataclass(frozen=True, slots=True)
class Wildcard:
    pass


Step = Key | Index | Wildcard


@dataclass(frozen=True)
class JsonPath:
    """A parsed path: its text, its steps, and where its wildcard is (1-based), if any."""

    text: str
    steps: tuple[Step, ...]
    wildcard_at: int | None = None

    @property
    def has_wildcard(self) -> bool:
        return self.wildcard_at is not None

    @property
    def top_key(self) -> str | None:
        """The top-level key this path reads: a name, ALL_KEYS, or None (it reads no key)."""
        if not self.steps or isinstance(self.steps[0], Wildcard):
            return ALL_KEYS
        first = self.steps[0]
        return first.name if isinstance(first, Key) else None

    def extract(self, docs: list[Any]) -> list[Any]:
        """The value at this path in each record (None when missing or null)."""
        return extract_all([self], docs)[0]

    def _matcher(self) -> Callable[[Any], list[Any] | None]:
        steps = self.steps
        last = len(steps)

        def walk(value: Any, at: int, out: list[Any]) -> None:
            if at == last:
                out.append(value)
                return
            step = steps[at]
            if isinstance(step, Key):
                if type(value) is dict and step.name in value:
                    walk(value[step.name], at + 1, out)
            elif isinstance(step, Index):
                if type(value) is list and -len(value) <= step.index < len(value):
                    walk(value[step.index], at + 1, out)
            elif type(value) is list:
                for item in value:
                    walk(item, at + 1, out)
            elif type(value) is dict:
                for item in value.values():
                    walk(item, at + 1, out)

        def match(doc: Any) -> list[Any] | None:
            out: list[Any] = []
            walk(doc, 0, out)
            return out or None

        return match


def parse_path(text: str) -> JsonPath:
    """Parse a path, or raise PathError saying what is wrong and where."""
    if len(text) > MAX_PATH_LENGTH:
        raise PathError(f"path is longer than {MAX_PATH_LENGTH} characters", MAX_PATH_LENGTH + 1)
    if not text.startswith("$"):
        raise PathError("a path starts with '$' (the record), e.g. $.device.id", 1)
    steps: list[Step] = []
    wildcard_at: int | None = None
    at = 1
    while at < len(text):
        start = at
        char = text[at]
        if char == ".":
            at += 1
            if text.startswith("*", at):
                steps.append(Wildcard())
                wildcard_at = wildcard_at or start + 1
                at += 1
            else:
                match = _NAME.match(text, at)
                if match is None:
                    raise PathError("expected a name after '.' (quote odd names: ['odd name'])", at + 1)
                steps.append(Key(match.group()))
                at = match.end()
        elif char == "[":
            step, at = _bracket(text, at + 1)
            if isinstance(step, Wildcard):
                wildcard_at = wildcard_at or start + 1
            steps.append(step)
        else:
            raise PathError(f"unexpected {char!r}; a step is .name, ['name'], [n] or [*]", at + 1)
        if len(steps) > MAX_STEPS:
            raise PathError(f"path has more than {MAX_STEPS} steps", start + 1)
    return JsonPath(text, tuple(steps), wildcard_at)


def _bracket(text: str, at: int) -> tuple[Step, int]:
    """Parse what follows '[' up to and including ']'; return the step and the next offset."""
    if at >= len(text):
        raise PathError("unclosed '['", at)
    char = text[at]
    if char == "*":
        step: Step = Wildcard()
        at += 1
    elif char in "'\"":
        name, at = _quoted(text, at)
        step = Key(name)
    else:
        match = _INDEX.match(text, at)
        if match is None:
            raise PathError("expected an index, '*' or a quoted name after '['", at + 1)
        step = Index(int(match.group()))
        at = match.end()
    if at >= len(text) or text[at] != "]":
        raise PathError("expected ']'", at + 1)
    return step, at + 1


def _quoted(text: str, at: int) -> tuple[str, int]:
    quote = text[at]
    out: list[str] = []
    i = at + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
        elif char == quote:
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise PathError("unterminated quoted name", at + 1)


def extract_all(paths: list[JsonPath], docs: list[Any]) -> list[list[Any]]:
    """The values of each path in each record (see `Extractor`)."""
    return Extractor(paths)(docs)


class Extractor:
    """Reads a fixed list of paths from a batch of records: `extractor(docs)` is the values of
    each path in each record. Paths sharing a prefix ($.device.id and $.device.site) walk it
    once, and each step runs over the whole column at once, which is several times faster
    than one call per record. Which step extends which prefix is planned here, once per
    mapping; a call keeps nothing (it is safe from several threads)."""

    def __init__(self, paths: list[JsonPath]) -> None:
        # Column k + 1 of a call is made by plan[k] from an earlier column (0: the records):
        # (source column, step), or (None, matcher) for a wildcard path, matched per record.
        self._plan: list[tuple[int | None, Any]] = []
        self._outputs: list[int] = []
        walked: dict[tuple[Step, ...], int] = {(): 0}
        for path in paths:
            if path.has_wildcard:
                self._plan.append((None, path._matcher()))
                self._outputs.append(len(self._plan))
                continue
            steps = path.steps
            done = len(steps)
            while steps[:done] not in walked:
                done -= 1
            column = walked[steps[:done]]
            for at in range(done, len(steps)):
                self._plan.append((column, steps[at]))
                column = walked[steps[:at + 1]] = len(self._plan)
            self._outputs.append(column)

    def __call__(self, docs: list[Any]) -> list[list[Any]]:
        columns = [docs]
        for source, step in self._plan:
            columns.append(list(map(step, docs)) if source is None else _step(columns[source], step))
        return [columns[i] for i in self._outputs]


def _step(values: list[Any], step: Key | Index) -> list[Any]:  # a wildcard path has its matcher
    if isinstance(step, Key):
        key = step.name
        try:
            # dict.get straight from C; it raises TypeError as soon as a value is not a dict.
            return list(map(dict.get, values, repeat(key)))
        except TypeError:
            return [v.get(key) if type(v) is dict else None for v in values]
    i = step.index
    if i >= 0:
        return [v[i] if type(v) is list and i < len(v) else None for v in values]
    return [v[i] if type(v) is list and -i <= len(v) else None for v in values]
