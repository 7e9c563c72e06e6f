"""Compile a MappingSpec: check every field, the filter and the validate rules, and build
the `CompiledMapping` that applies them, or raise one SpecError listing every problem."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from dash_ray.errors import Problem, SpecError
from dash_ray.mapping.casts import can_store, cast_values, show
from dash_ray.mapping.compute import compile_evaluator
from dash_ray.mapping.engine import CompiledField, CompiledMapping
from dash_ray.mapping.expressions import ExpressionError, parse_expression
from dash_ray.mapping.paths import PathError, parse_path
from dash_ray.mapping.rules import compile_rules
from dash_ray.mapping.timestamps import check_format, check_timezone
from dash_ray.mapping.typecheck import check_expression
from dash_ray.mapping.values import Evaluator
from dash_ray.spec import FieldSpec, MappingSpec

__all__ = ["compile_mapping"]


def compile_mapping(spec: MappingSpec) -> CompiledMapping:
    """Check a mapping and prepare it for `apply`; raise SpecError listing every problem,
    each with its path (e.g. `mapping.fields.temp_f.expr`) and, in a path or expression,
    the 1-based character position."""
    problems: list[Problem] = []
    env: dict[str, str] = {"received_at": "timestamp"}
    later = set(spec.fields)
    fields: list[CompiledField] = []
    for name, fs in spec.fields.items():
        later.discard(name)
        field = _compile_field(name, fs, env, later, problems)
        env[name] = fs.type
        if field is not None:
            fields.append(field)
    filter_ = None
    if spec.filter is not None:
        filter_ = _compile_filter(spec.filter, env, problems)
    checks, rule_problems = compile_rules(spec.rules, {name: f.type for name, f in spec.fields.items()})
    problems += rule_problems
    if problems:
        raise SpecError(problems=problems)
    return CompiledMapping(spec, fields, filter_, checks)


def _compile_field(name: str, fs: FieldSpec, env: dict[str, str], later: set[str],
                   problems: list[Problem]) -> CompiledField | None:
    where = f"mapping.fields.{name}"
    count = len(problems)
    if name == "time" and fs.type != "timestamp":
        problems.append(Problem(f"{where}.type", f"the time field must have type timestamp, not {fs.type}"))
    timezone_ok = True
    if fs.timezone is not None:
        error = check_timezone(fs.timezone)
        if error:
            problems.append(Problem(f"{where}.timezone", error))
            timezone_ok = False
    if fs.format is not None:
        error = check_format(fs.format)
        if error:
            problems.append(Problem(f"{where}.format", error))
    default = None
    if fs.default is not None:
        if fs.required:
            problems.append(Problem(f"{where}.default", "a required field never uses its default; drop one"))
        elif timezone_ok:
            default = _default(fs, where, problems)
    path = evaluate = expr_type = None
    if fs.path is not None:
        try:
            path = parse_path(fs.path)
        except PathError as exc:
            problems.append(Problem(f"{where}.path", exc.message, exc.position))
        else:
            if path.has_wildcard and fs.type != "json":
                problems.append(Problem(f"{where}.path", f"a wildcard yields a list: declare type json, not {fs.type}",
                                        path.wildcard_at))
    elif fs.expr is not None:  # the spec has each field give a path or an expression
        try:
            tree = check_expression(parse_expression(fs.expr), env, later=later)
        except ExpressionError as exc:
            problems.append(Problem(f"{where}.expr", exc.message, exc.position))
        else:
            expr_type = tree.type
            if not can_store(expr_type, fs.type):
                problems.append(Problem(f"{where}.expr", f"the expression gives {expr_type}, which cannot be "
                                                         f"stored in a {fs.type} field", 1))
            evaluate = compile_evaluator(tree)
    if len(problems) > count:
        return None
    return CompiledField(name, fs, path, evaluate, expr_type, default)


def _default(fs: FieldSpec, where: str, problems: list[Problem]) -> pa.Scalar | None:
    failed: object
    try:
        array, failed = cast_values([fs.default], fs.type, unit=fs.unit, fmt=fs.format, timezone=fs.timezone)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        failed = True
    if failed is not None:
        problems.append(Problem(f"{where}.default", f"default {_shown(fs.default)} is not a valid {fs.type}"))
        return None
    return array[0]


def _shown(value: Any) -> str:
    try:
        return show(value)
    except (TypeError, orjson.JSONEncodeError):
        return repr(value)[:120]


def _compile_filter(text: str, env: dict[str, str], problems: list[Problem]) -> Evaluator | None:
    try:
        tree = check_expression(parse_expression(text), env)
    except ExpressionError as exc:
        problems.append(Problem("mapping.filter", exc.message, exc.position))
        return None
    if tree.type == "null":
        return lambda columns, n: pa.nulls(n, pa.bool_())
    if tree.type != "bool":
        problems.append(Problem("mapping.filter", f"the filter must be a boolean expression, not {tree.type}", 1))
        return None
    return compile_evaluator(tree)
