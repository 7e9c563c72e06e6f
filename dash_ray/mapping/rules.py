"""Validate rules: each `RuleSpec` becomes a list of checks on one mapped field.

A rule's checks run in the order required, min, max, enum, regex; a record is dead-lettered by
the first check it fails, with that check's name as the rule. A null value fails only
`required` (so add `required: true` to refuse nulls as well).
- min/max apply to int, double and timestamp fields; for a timestamp they are epoch seconds.
  Both bounds are inclusive.
- enum values are cast to the field's type when the mapping compiles (an enum value that
  cannot be cast is a spec problem); a json field compares JSON text.
- regex applies to string fields. It is RE2 syntax (no look-around or back-references) and
  searches (use ^ and $ to anchor the whole value); RE2 matches in linear time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.errors import Problem
from dash_ray.mapping.casts import ARROW_TYPES, cast_values, iso_text, json_text, show
from dash_ray.mapping.timestamps import MAX_US, MIN_US
from dash_ray.mapping.values import true_mask
from dash_ray.spec import RuleSpec

__all__ = ["Check", "compile_rules"]

_ORDERED = ("int", "double", "timestamp")


@dataclass(frozen=True)
class Check:
    """One check on one field: `failing(column)` is a numpy mask of failing rows and
    `reason(value)` explains a failure for the JSON value that failed it."""

    field: str
    rule: str
    failing: Callable[[pa.Array], np.ndarray]
    reason: Callable[[Any], str]


def compile_rules(rules: list[RuleSpec], types: Mapping[str, str]) -> tuple[list[Check], list[Problem]]:
    """The checks for `rules` on fields of `types` (name → type), and every problem found."""
    checks: list[Check] = []
    problems: list[Problem] = []
    for i, rule in enumerate(rules):
        where = f"mapping.validate.{i}"
        type_ = types.get(rule.field)
        if type_ is None:
            known = ", ".join(types) or "none"
            problems.append(Problem(f"{where}.field", f"unknown field {rule.field!r} (declared: {known})"))
            continue
        found, wrong = _rule_checks(rule, type_, where)
        checks += found
        problems += wrong
    return checks, problems


def _rule_checks(rule: RuleSpec, type_: str, where: str) -> tuple[list[Check], list[Problem]]:
    checks: list[Check] = []
    problems: list[Problem] = []
    name = rule.field
    if rule.required:
        checks.append(Check(name, "required", _is_null, lambda v: f"field {json_text(name)} is null"))
    for bound in ("min", "max"):
        limit = getattr(rule, bound)
        if limit is None:
            continue
        if type_ not in _ORDERED:
            problems.append(Problem(f"{where}.{bound}", f"{bound} applies to int, double and timestamp fields; "
                                                      f"{name!r} is {type_}"))
            continue
        if type_ == "timestamp" and not MIN_US <= limit * 1_000_000 <= MAX_US:
            problems.append(Problem(f"{where}.{bound}", f"{bound} of a timestamp is epoch seconds within "
                                                      "years 0001-9999"))
            continue
        checks.append(_bound(name, bound, limit, type_))
    if rule.enum is not None:
        check = _enum(name, rule.enum, type_)
        if isinstance(check, Problem):
            problems.append(Problem(f"{where}.enum", check.message))
        else:
            checks.append(check)
    if rule.regex is not None:
        if type_ != "string":
            problems.append(Problem(f"{where}.regex", f"regex applies to string fields; {name!r} is {type_}"))
        else:
            try:
                pc.match_substring_regex(pa.array([""], pa.string()), rule.regex)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                problems.append(Problem(f"{where}.regex", f"not a valid RE2 regex: {exc}"))
            else:
                checks.append(_regex(name, rule.regex))
    return checks, problems


def _is_null(column: pa.Array) -> np.ndarray:
    mask: np.ndarray = column.is_null().to_numpy(zero_copy_only=False)
    return mask


def _bound(name: str, bound: str, limit: float, type_: str) -> Check:
    if type_ == "timestamp":
        scalar = pa.scalar(round(limit * 1_000_000), ARROW_TYPES["timestamp"])
        shown = iso_text(pa.array([scalar.value], ARROW_TYPES["timestamp"]))[0].as_py()
    else:
        number = float(limit)
        shown = json_text(int(limit) if number.is_integer() else limit)
    kernel = pc.less if bound == "min" else pc.greater
    compare = np.less if bound == "min" else np.greater
    words = "below the minimum" if bound == "min" else "above the maximum"

    def failing(column: pa.Array) -> np.ndarray:
        if type_ == "timestamp":
            return true_mask(kernel(column, scalar))
        if type_ == "int":  # compared as a double: rounded past 2**53 (an unsafe cast never raises)
            column = column.cast(pa.float64(), safe=False)
        # Doubles compare in numpy, cheaper than a kernel and its null mask to fill: nulls
        # read as NaN, and a comparison with NaN is false, as a null's must be.
        compared: np.ndarray = compare(column.to_numpy(zero_copy_only=False), number)
        return compared

    return Check(name, bound, failing, lambda v: f"{show(v)} is {words} {shown}")


def _enum(name: str, values: list[Any], type_: str) -> Check | Problem:
    present = [v for v in values if v is not None]
    array, failed = cast_values(present, type_)
    if failed is not None:
        bad = present[int(np.flatnonzero(failed)[0])]
        return Problem("", f"enum value {show(bad)} is not a valid {type_}")
    allowed = show(values)

    def failing(column: pa.Array) -> np.ndarray:
        return true_mask(pc.and_(column.is_valid(), pc.invert(pc.is_in(column, value_set=array))))

    return Check(name, "enum", failing, lambda v: f"{show(v)} is not one of {allowed}")


def _regex(name: str, pattern: str) -> Check:
    def failing(column: pa.Array) -> np.ndarray:
        matches = pc.match_substring_regex(column, pattern)
        if matches.null_count:  # a null value does not fail (see the module docstring)
            matches = matches.fill_null(True)
        failed: np.ndarray = ~matches.to_numpy(zero_copy_only=False)
        return failed

    return Check(name, "regex", failing, lambda v: f"{show(v)} does not match {json_text(pattern)}")
