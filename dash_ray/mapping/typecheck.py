"""Type checking of parsed expressions: every name, operator and function is checked and the
tree comes back typed, so evaluation never meets a type it was not built for.

Types are the field types (`string`, `int`, `double`, `bool`, `timestamp`, `json`) plus `null`,
the type of the NULL literal, which fits anywhere. Rules:
- `+ - * %` take numbers; int with int stays int, anything with a double is double. `/` always
  gives a double (7 / 2 is 3.5). `%` keeps the sign of the dividend (-7 % 3 is -1), as in SQL.
- `= <> < <= > >=` and `IN` compare numbers with numbers, and otherwise equal types (bool with
  bool, string with string, timestamp with timestamp); a string literal compared with a
  timestamp is read as an ISO 8601 timestamp at compile time. json values are not comparable.
- `AND OR NOT` take bools (three-valued logic); `IS [NOT] NULL` takes anything.
- `LIKE` matches a string against a string literal pattern: `%` any run, `_` one character,
  backslash escapes either; case-sensitive.
- `||` joins strings; numbers, bools and timestamps are first written as text (see casts).
- CASE branches and coalesce arguments must share a type (int and double mix as double).
- Functions: coalesce(x, …), lower(s), upper(s), length(s) → int (characters),
  substr(s, start[, count]) (1-based; positions before 1 count, as in SQL), abs(n), round(n[, digits])
  (half away from zero; digits an integer literal, may be negative), floor(n), ceil(n),
  date_trunc('unit', t) with unit microsecond … year (weeks start on Monday, in UTC),
  epoch(t) → double seconds since 1970-01-01 UTC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping

from dash_ray.mapping.expressions import (
    INT64_MAX,
    Binary,
    Call,
    Case,
    Column,
    Expr,
    ExpressionError,
    InList,
    IsNull,
    Like,
    Literal,
    Nary,
    Unary,
    literal_value,
)
from dash_ray.mapping.timestamps import parse_iso_scalar

__all__ = ["DATE_TRUNC_UNITS", "FUNCTIONS", "check_expression", "unify"]

DATE_TRUNC_UNITS = ("microsecond", "millisecond", "second", "minute", "hour", "day", "week", "month",
                    "quarter", "year")
FUNCTIONS = ("abs", "ceil", "coalesce", "date_trunc", "epoch", "floor", "length", "lower", "round",
             "substr", "upper")
_NUMERIC = ("int", "double")


def unify(a: str, b: str) -> str | None:
    """The type both values can be read as, or None."""
    if a == b:
        return a
    if a == "null":
        return b
    if b == "null":
        return a
    if a in _NUMERIC and b in _NUMERIC:
        return "double"
    return None


def check_expression(tree: Expr, env: Mapping[str, str], *, later: Collection[str] = ()) -> Expr:
    """Type `tree` against `env` (name → type); raise ExpressionError naming the position.

    `later` names fields declared after this expression, for a clearer message."""
    return _Checker(env, later).check(tree)


def _null(pos: int, type_: str) -> Literal:
    return Literal(pos, None, type_)


class _Checker:
    def __init__(self, env: Mapping[str, str], later: Collection[str]) -> None:
        self.env = env
        self.later = later

    def check(self, node: Expr) -> Expr:
        method: Callable[[Expr], Expr] = getattr(self, "_" + type(node).__name__.lower())
        return method(node)

    def fit(self, node: Expr, type_: str) -> Expr:
        """`node` as a value of `type_` (a NULL becomes a typed NULL; int promotes to double)."""
        if node.type == "null" and type_ != "null":
            return _null(node.pos, type_)
        if (isinstance(node, Literal) and node.type == "string" and type_ == "timestamp"
                and node.value is not None):
            micros = parse_iso_scalar(node.value)
            if micros is None:
                raise ExpressionError(f"{node.value!r} is not an ISO 8601 timestamp", node.pos)
            return Literal(node.pos, micros, "timestamp")
        return node

    # -- leaves --------------------------------------------------------------------------------

    def _literal(self, node: Literal) -> Expr:
        if node.type == "int" and not -INT64_MAX - 1 <= node.value <= INT64_MAX:
            raise ExpressionError("integer literal does not fit in 64 bits", node.pos)
        return node

    def _column(self, node: Column) -> Expr:
        type_ = self.env.get(node.name)
        if type_ is None:
            if node.name in self.later:
                raise ExpressionError(
                    f"field {node.name!r} is declared after this expression; move it above", node.pos)
            known = ", ".join(sorted(self.env))
            raise ExpressionError(f"unknown field {node.name!r} (known here: {known})", node.pos)
        return dataclasses.replace(node, type=type_)

    # -- operators -----------------------------------------------------------------------------

    def _unary(self, node: Unary) -> Expr:
        operand = self.check(node.operand)
        if node.op == "NOT":
            self.need(operand, ("bool",), "NOT")
            return dataclasses.replace(node, operand=self.fit(operand, "bool"), type="bool")
        self.need(operand, _NUMERIC, f"unary {node.op}")
        if operand.type == "null":
            return _null(node.pos, "null")
        return dataclasses.replace(node, operand=operand, type=operand.type)

    def _binary(self, node: Binary) -> Expr:
        left, right = self.check(node.left), self.check(node.right)
        if node.op in ("+", "-", "*", "/", "%"):
            hint = " (use || to join strings)" if node.op == "+" and "string" in (left.type, right.type) else ""
            self.need(left, _NUMERIC, f"operator {node.op}", hint)
            self.need(right, _NUMERIC, f"operator {node.op}", hint)
            type_ = unify(left.type, right.type) or "null"
            if node.op == "/" and type_ != "null":
                type_ = "double"
            if type_ == "null":
                return _null(node.pos, "null")
            return dataclasses.replace(node, left=self.fit(left, type_), right=self.fit(right, type_), type=type_)
        left, right, _ = self.comparable(node, left, right, node.op)
        return dataclasses.replace(node, left=left, right=right, type="bool")

    def comparable(self, node: Expr, left: Expr, right: Expr, op: str) -> tuple[Expr, Expr, str]:
        if left.type == "timestamp" and right.type == "string" and isinstance(right, Literal):
            right = self.fit(right, "timestamp")
        if right.type == "timestamp" and left.type == "string" and isinstance(left, Literal):
            left = self.fit(left, "timestamp")
        type_ = unify(left.type, right.type)
        if type_ is None or type_ == "json":
            raise ExpressionError(f"cannot compare {left.type} with {right.type} ({op})", node.pos)
        if type_ == "null":
            type_ = "bool"  # NULL = NULL: any type gives the same null result
        return self.fit(left, type_), self.fit(right, type_), type_

    def _nary(self, node: Nary) -> Expr:
        operands = [self.check(o) for o in node.operands]
        if node.op == "||":
            for o in operands:
                self.need(o, ("string", "int", "double", "bool", "timestamp"), "||")
            return dataclasses.replace(node, operands=tuple(self.fit(o, "string") for o in operands),
                                       type="string")
        for o in operands:
            self.need(o, ("bool",), node.op)
        return dataclasses.replace(node, operands=tuple(self.fit(o, "bool") for o in operands), type="bool")

    def _isnull(self, node: IsNull) -> Expr:
        return dataclasses.replace(node, operand=self.check(node.operand), type="bool")

    def _inlist(self, node: InList) -> Expr:
        operand = self.check(node.operand)
        items = [self.check(i) for i in node.items]
        if operand.type == "timestamp":
            items = [self.fit(i, "timestamp") if isinstance(i, Literal) and i.type == "string" else i
                     for i in items]
        type_ = operand.type
        for item in items:
            merged = unify(type_, item.type)
            if merged is None or merged == "json":
                raise ExpressionError(f"cannot compare {operand.type} with {item.type} (IN)", item.pos)
            type_ = merged
        if type_ == "null":
            type_ = "bool"  # NULL IN (NULL): any type gives the same null result
        return dataclasses.replace(node, operand=self.fit(operand, type_),
                                   items=tuple(self.fit(i, type_) for i in items), type="bool")

    def _like(self, node: Like) -> Expr:
        operand = self.check(node.operand)
        pattern = self.check(node.pattern)
        self.need(operand, ("string",), "LIKE")
        if not (isinstance(pattern, Literal) and pattern.type == "string"):
            raise ExpressionError("LIKE needs a string literal pattern, e.g. 'sensor-%'", pattern.pos)
        return dataclasses.replace(node, operand=self.fit(operand, "string"), pattern=pattern, type="bool")

    def _case(self, node: Case) -> Expr:
        whens = []
        results = []
        for condition, result in node.whens:
            condition = self.check(condition)
            self.need(condition, ("bool",), "CASE WHEN")
            whens.append(self.fit(condition, "bool"))
            results.append(self.check(result))
        otherwise = self.check(node.otherwise) if node.otherwise is not None else None
        type_ = self.common([*results, *([otherwise] if otherwise else [])], "CASE branches")
        return dataclasses.replace(
            node,
            whens=tuple((w, self.fit(r, type_)) for w, r in zip(whens, results, strict=True)),
            otherwise=self.fit(otherwise, type_) if otherwise is not None else None,
            type=type_,
        )

    # -- functions -----------------------------------------------------------------------------

    def _call(self, node: Call) -> Expr:
        if node.name not in FUNCTIONS:
            raise ExpressionError(
                f"unknown function {node.name!r}; the functions are {', '.join(FUNCTIONS)}", node.pos)
        args = [self.check(a) for a in node.args]
        name = node.name
        if name == "coalesce":
            self.arity(node, args, 1, None)
            type_ = self.common(args, "coalesce arguments")
            return dataclasses.replace(node, args=tuple(self.fit(a, type_) for a in args), type=type_)
        if name in ("lower", "upper", "length"):
            self.arity(node, args, 1, 1)
            self.need(args[0], ("string",), f"{name}()")
            out = "int" if name == "length" else "string"
            return dataclasses.replace(node, args=(self.fit(args[0], "string"),), type=out)
        if name == "substr":
            self.arity(node, args, 2, 3)
            self.need(args[0], ("string",), "substr()")
            for a in args[1:]:
                self.need(a, ("int",), "substr() positions")
            fitted = (self.fit(args[0], "string"), *(self.fit(a, "int") for a in args[1:]))
            return dataclasses.replace(node, args=fitted, type="string")
        if name in ("abs", "floor", "ceil", "round"):
            self.arity(node, args, 1, 2 if name == "round" else 1)
            self.need(args[0], _NUMERIC, f"{name}()")
            if len(args) == 2 and not (isinstance(args[1], Literal) and args[1].type == "int"):
                raise ExpressionError("round() takes its digits as an integer literal", args[1].pos)
            if len(args) == 2 and not -30 <= literal_value(args[1]) <= 30:
                raise ExpressionError("round() digits must be between -30 and 30", args[1].pos)
            type_ = "int" if args[0].type == "null" else args[0].type
            return dataclasses.replace(node, args=(self.fit(args[0], type_), *args[1:]), type=type_)
        if name == "date_trunc":
            self.arity(node, args, 2, 2)
            unit = args[0]
            if not (isinstance(unit, Literal) and unit.type == "string"
                    and str(unit.value).lower() in DATE_TRUNC_UNITS):
                raise ExpressionError(
                    f"date_trunc() takes a unit literal, one of {', '.join(DATE_TRUNC_UNITS)}", unit.pos)
            self.need(args[1], ("timestamp",), "date_trunc()")
            unit = Literal(unit.pos, str(unit.value).lower(), "string")
            return dataclasses.replace(node, args=(unit, self.fit(args[1], "timestamp")), type="timestamp")
        # epoch
        self.arity(node, args, 1, 1)
        self.need(args[0], ("timestamp",), "epoch()")
        return dataclasses.replace(node, args=(self.fit(args[0], "timestamp"),), type="double")

    # -- helpers -------------------------------------------------------------------------------

    def need(self, node: Expr, types: tuple[str, ...], what: str, hint: str = "") -> None:
        if node.type != "null" and node.type not in types:
            raise ExpressionError(f"{what} needs {' or '.join(types)}, got {node.type}{hint}", node.pos)

    def arity(self, node: Call, args: list[Expr], low: int, high: int | None) -> None:
        if len(args) < low or (high is not None and len(args) > high):
            if high is None:
                wanted = f"at least {low}"
            else:
                wanted = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(f"{node.name}() takes {wanted} argument(s), got {len(args)}", node.pos)

    def common(self, nodes: list[Expr], what: str) -> str:
        type_ = "null"
        for node in nodes:
            merged = unify(type_, node.type)
            if merged is None:
                raise ExpressionError(f"{what} have different types: {type_} and {node.type}", node.pos)
            type_ = merged
        return type_
