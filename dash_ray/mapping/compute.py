"""Evaluation of type-checked expressions on Arrow columns with pyarrow.compute kernels: the
compiler of a typed tree and its operators (the arithmetic's null-for-no-result rules are in
`arithmetic.py`, the built-in functions in `functions.py`).

A typed tree is compiled once into nested closures; evaluating one runs a fixed, whitelisted
set of kernels over whole columns (there is no interpreter of user text at run time).
Evaluation never raises for any data: null in gives null out, and an operation with no
result gives null rather than an error: division or modulo by zero, an integer result
beyond 64 bits, a double result that is not finite, substr with a negative count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.mapping.arithmetic import as_double, finite, int_op, modulo
from dash_ray.mapping.casts import ARROW_TYPES, iso_text
from dash_ray.mapping.expressions import (
    Binary,
    Call,
    Case,
    Column,
    Expr,
    InList,
    IsNull,
    Like,
    Literal,
    Nary,
    Unary,
    literal_value,
)
from dash_ray.mapping.functions import compile_call
from dash_ray.mapping.values import FALSE, Columns, Evaluator, Fn, Value, as_array

__all__ = ["compile_evaluator"]

_COMPARE = {"=": pc.equal, "<>": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}


def compile_evaluator(tree: Expr) -> Evaluator:
    """A function (columns, row count) → Arrow array of the tree's type, one value per row."""
    fn = _compile(tree)
    arrow_type = ARROW_TYPES[tree.type]

    def evaluate(columns: Columns, n: int) -> pa.Array:
        return as_array(fn(columns, n), n, arrow_type)

    return evaluate


def _compile(node: Expr) -> Fn:
    if node.type == "null":
        null = pa.scalar(None)
        return lambda columns, n: null
    return _COMPILERS[type(node)](node)


def _literal(node: Literal) -> Fn:
    scalar = pa.scalar(node.value, ARROW_TYPES[node.type])
    return lambda columns, n: scalar


def _column(node: Column) -> Fn:
    name = node.name
    return lambda columns, n: columns[name]


def _unary(node: Unary) -> Fn:
    operand = _compile(node.operand)
    if node.op == "NOT":
        return lambda columns, n: pc.invert(operand(columns, n))
    if node.op == "+":
        return operand
    if node.type == "double":
        return lambda columns, n: pc.negate(operand(columns, n))
    return lambda columns, n: int_op(pc.negate_checked, lambda a: -a, operand(columns, n))


def _binary(node: Binary) -> Fn:
    left, right = _compile(node.left), _compile(node.right)
    op = node.op
    if op in _COMPARE:
        kernel = _COMPARE[op]
        if {node.left.type, node.right.type} == {"int", "double"}:
            left, right = as_double(node.left, left), as_double(node.right, right)
        return lambda columns, n: kernel(left(columns, n), right(columns, n))
    if op == "%":
        return lambda columns, n: modulo(left(columns, n), right(columns, n), n, node.type)
    if node.type == "double":
        kernel = {"+": pc.add, "-": pc.subtract, "*": pc.multiply, "/": pc.divide}[op]
        left, right = as_double(node.left, left), as_double(node.right, right)
        return lambda columns, n: finite(kernel(left(columns, n), right(columns, n)))
    checked, plain = {
        "+": (pc.add_checked, lambda a, b: a + b),
        "-": (pc.subtract_checked, lambda a, b: a - b),
        "*": (pc.multiply_checked, lambda a, b: a * b),
    }[op]
    return lambda columns, n: int_op(checked, plain, left(columns, n), right(columns, n))


def _nary(node: Nary) -> Fn:
    parts = [_compile(o) for o in node.operands]
    if node.op == "||":
        texts = [_text_of(o.type) for o in node.operands]

        def concat(columns: Columns, n: int) -> Value:
            values = [as_array(text(part(columns, n), n), n, pa.string())
                      for part, text in zip(parts, texts, strict=True)]
            return pc.binary_join_element_wise(*values, "")

        return concat
    kernel = pc.and_kleene if node.op == "AND" else pc.or_kleene

    def logic(columns: Columns, n: int) -> Value:
        result = parts[0](columns, n)
        for part in parts[1:]:
            result = kernel(result, part(columns, n))
        return result

    return logic


def _text_of(type_: str) -> Callable[[Value, int], Value]:
    """How a || operand becomes text: the same text a string field would hold."""
    if type_ == "string":
        return lambda value, n: value
    if type_ == "int":
        return lambda value, n: pc.cast(value, pa.string())
    if type_ == "bool":
        return lambda value, n: pc.if_else(value, "true", "false")
    if type_ == "timestamp":
        return lambda value, n: iso_text(as_array(value, n))
    return lambda value, n: pa.array(
        [None if v is None else orjson.dumps(v).decode() for v in as_array(value, n).to_pylist()], pa.string())


def _isnull(node: IsNull) -> Fn:
    if node.operand.type == "null":
        constant = pa.scalar(not node.negated)
        return lambda columns, n: constant
    operand = _compile(node.operand)
    kernel = pc.is_valid if node.negated else pc.is_null

    def test(columns: Columns, n: int) -> Value:
        value = operand(columns, n)
        if isinstance(value, pa.Scalar):
            return pa.scalar(value.is_valid == node.negated)
        return kernel(value)

    return test


def _inlist(node: InList) -> Fn:
    operand = _compile(node.operand)
    items = [_compile(i) for i in node.items]
    finish = pc.invert if node.negated else (lambda v: v)
    types = {node.operand.type, *(i.type for i in node.items)} - {"null"}
    arrow_type = ARROW_TYPES["double" if "double" in types else node.operand.type]
    if all(isinstance(i, Literal) for i in node.items):
        listed = [literal_value(i) for i in node.items]
        known = pa.array([v for v in listed if v is not None], arrow_type)
        has_null = any(v is None for v in listed)

        def member(columns: Columns, n: int) -> Value:
            value = as_array(operand(columns, n), n, arrow_type)
            found = pc.is_in(value, value_set=known)
            # SQL: a null operand, or no match when the list holds NULL, is unknown (null).
            found = pc.if_else(value.is_valid(), found, pa.scalar(None, pa.bool_()))
            if has_null:
                found = pc.if_else(found, True, pa.scalar(None, pa.bool_()))
            return finish(found)

        return member

    def chain(columns: Columns, n: int) -> Value:
        value = as_array(operand(columns, n), n, arrow_type)
        found: Value = pa.scalar(False)
        for item in items:
            found = pc.or_kleene(found, pc.equal(value, as_array(item(columns, n), n, arrow_type)))
        return finish(found)

    return chain


def _like(node: Like) -> Fn:
    operand = _compile(node.operand)
    pattern = literal_value(node.pattern)
    finish = pc.invert if node.negated else (lambda v: v)
    return lambda columns, n: finish(pc.match_like(as_array(operand(columns, n), n, pa.string()), pattern))


def _case(node: Case) -> Fn:
    conditions = [_compile(c) for c, _ in node.whens]
    results = [_compile(r) for _, r in node.whens]
    otherwise = _compile(node.otherwise) if node.otherwise is not None else None
    arrow_type = ARROW_TYPES[node.type]
    names = [str(i) for i in range(len(conditions))]

    def case(columns: Columns, n: int) -> Value:
        tests = [_when(as_array(c(columns, n), n, pa.bool_())) for c in conditions]
        values = [_datum(r(columns, n), n, arrow_type) for r in results]
        if otherwise is not None:
            values.append(_datum(otherwise(columns, n), n, arrow_type))
        return pc.case_when(pa.StructArray.from_arrays(tests, names), *values)

    return case


def _when(test: pa.Array) -> pa.Array:
    """A WHEN condition for case_when, where null is false."""
    return test.fill_null(FALSE) if test.null_count else test


def _datum(value: Value, n: int, type_: pa.DataType) -> Value:
    """A case_when branch as `type_`, like `as_array` but scalars stay scalars: the kernel
    broadcasts them itself, so a `THEN 'hot'` needs no column of n copies."""
    if not isinstance(value, pa.Scalar):
        return as_array(value, n, type_)
    if not value.is_valid:
        return pa.scalar(None, type_)
    return value if value.type == type_ else pc.cast(value, type_, safe=False)


def _call(node: Call) -> Fn:
    return compile_call(node, [_compile(a) for a in node.args])


_COMPILERS: dict[type, Callable[[Any], Fn]] = {
    Literal: _literal, Column: _column, Unary: _unary, Binary: _binary, Nary: _nary,
    IsNull: _isnull, InList: _inlist, Like: _like, Case: _case, Call: _call,
}
