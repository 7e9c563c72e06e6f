"""Evaluation of type-checked expressions on Arrow columns with pyarrow.compute kernels.

A typed tree is compiled once into nested closures; evaluating one runs a fixed, whitelisted
set of kernels over whole columns (there is no interpreter of user text at run time).
Evaluation never raises for any data: null in gives null out, and an operation with no
result gives null rather than an error: division or modulo by zero, an integer result
beyond 64 bits, a double result that is not finite, substr with a negative count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

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
)

__all__ = ["Evaluator", "compile_evaluator", "true_mask"]

Value = pa.Array | pa.Scalar
Columns = Mapping[str, pa.Array]
Evaluator = Callable[[Columns, int], pa.Array]
_Fn = Callable[[Columns, int], Value]

_COMPARE = {"=": pc.equal, "<>": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_FALSE = pa.scalar(False)


def true_mask(value: pa.Array) -> np.ndarray:
    """A boolean array as a numpy mask in which null counts as false."""
    if value.null_count:  # fill_null is a kernel call; most masks have no null to fill
        value = value.fill_null(_FALSE)
    return value.to_numpy(zero_copy_only=False)


def compile_evaluator(tree: Expr) -> Evaluator:
    """A function (columns, row count) → Arrow array of the tree's type, one value per row."""
    fn = _compile(tree)
    arrow_type = ARROW_TYPES[tree.type]

    def evaluate(columns: Columns, n: int) -> pa.Array:
        return _array(fn(columns, n), n, arrow_type)

    return evaluate


def _array(value: Value, n: int, type_: pa.DataType | None = None) -> pa.Array:
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Scalar):
        if not value.is_valid:
            return pa.nulls(n, type_ or value.type)
        value = pa.repeat(value, n)
    if type_ is not None and value.type != type_ and type_ != pa.null():
        value = value.cast(type_, safe=False)  # int64 → double may round past 2**53; never raise
    return value


def _compile(node: Expr) -> _Fn:
    if node.type == "null":
        null = pa.scalar(None)
        return lambda columns, n: null
    return _COMPILERS[type(node)](node)


def _literal(node: Literal) -> _Fn:
    scalar = pa.scalar(node.value, ARROW_TYPES[node.type])
    return lambda columns, n: scalar


def _column(node: Column) -> _Fn:
    name = node.name
    return lambda columns, n: columns[name]


def _unary(node: Unary) -> _Fn:
    operand = _compile(node.operand)
    if node.op == "NOT":
        return lambda columns, n: pc.invert(operand(columns, n))
    if node.op == "+":
        return operand
    if node.type == "double":
        return lambda columns, n: pc.negate(operand(columns, n))
    return lambda columns, n: _int_op(pc.negate_checked, lambda a: -a, operand(columns, n))


def _binary(node: Binary) -> _Fn:
    left, right = _compile(node.left), _compile(node.right)
    op = node.op
    if op in _COMPARE:
        kernel = _COMPARE[op]
        if {node.left.type, node.right.type} == {"int", "double"}:
            left, right = _as_double(node.left, left), _as_double(node.right, right)
        return lambda columns, n: kernel(left(columns, n), right(columns, n))
    if op == "%":
        return lambda columns, n: _modulo(left(columns, n), right(columns, n), n, node.type)
    if node.type == "double":
        kernel = {"+": pc.add, "-": pc.subtract, "*": pc.multiply, "/": pc.divide}[op]
        left, right = _as_double(node.left, left), _as_double(node.right, right)
        return lambda columns, n: _finite(kernel(left(columns, n), right(columns, n)))
    checked, plain = {
        "+": (pc.add_checked, lambda a, b: a + b),
        "-": (pc.subtract_checked, lambda a, b: a - b),
        "*": (pc.multiply_checked, lambda a, b: a * b),
    }[op]
    return lambda columns, n: _int_op(checked, plain, left(columns, n), right(columns, n))


def _as_double(node: Expr, fn: _Fn) -> _Fn:
    """An int operand of a double operation, as double (rounded past 2**53, never raising)."""
    if node.type != "int":
        return fn
    if isinstance(node, Literal):
        # A literal (`temp_c * 9`) casts to the same scalar on every call: cast it once, here.
        constant = pc.cast(fn({}, 0), pa.float64(), safe=False)
        return lambda columns, n: constant
    return lambda columns, n: pc.cast(fn(columns, n), pa.float64(), safe=False)


def _int_op(checked: Callable[..., Value], plain: Callable[..., int], *args: Value) -> Value:
    """An int64 kernel whose overflowing results become null (Arrow would raise for the batch)."""
    try:
        return checked(*args)
    except pa.ArrowInvalid:
        return _int_rows(plain, *args)


def _int_rows(plain: Callable[..., int], *args: Value) -> Value:
    """`plain` on Python ints row by row; null in or a result past 64 bits gives null."""
    arrays = [a for a in args if not isinstance(a, pa.Scalar)]
    n = len(arrays[0]) if arrays else 1
    lists = [_array(a, n).to_pylist() for a in args]
    out = []
    for row in zip(*lists):
        if None in row:
            out.append(None)
            continue
        value = plain(*row)
        out.append(value if _INT_MIN <= value <= _INT_MAX else None)
    return pa.array(out, pa.int64()) if arrays else pa.scalar(out[0], pa.int64())


def _finite(value: Value) -> Value:
    """A double result with its infinities and NaNs made null."""
    if isinstance(value, pa.Array):
        # Nearly always there is nothing to null out, which numpy shows for a fraction of the
        # cost of the two kernels below: nulls read as NaN there, so no row needs nulling
        # exactly when the finite values and the nulls add up to the whole array.
        finite = np.count_nonzero(np.isfinite(value.to_numpy(zero_copy_only=False)))
        if finite + value.null_count == len(value):
            return value
    return pc.if_else(pc.is_finite(value), value, pa.scalar(None, pa.float64()))


def _modulo(left: Value, right: Value, n: int, type_: str) -> pa.Array:
    """Truncated modulo (the sign of the dividend), as in SQL; by zero gives null."""
    dtype = np.int64 if type_ == "int" else np.float64
    a, b = _array(left, n), _array(right, n)
    valid = _mask(pc.and_(a.is_valid(), b.is_valid()))
    x = a.fill_null(0).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    y = b.fill_null(1).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    valid &= y != 0
    # x % -1 is 0 and x % 1 is 0; using 1 avoids INT64_MIN % -1, which traps in C.
    y = np.where((y == 0) | (y == -1), 1, y)
    with np.errstate(all="ignore"):
        result = np.fmod(x, y)
    if type_ == "double":
        valid &= np.isfinite(result)
    return pa.array(result, type=ARROW_TYPES[type_], mask=~valid)


def _mask(value: Value) -> np.ndarray:
    return value.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _nary(node: Nary) -> _Fn:
    parts = [_compile(o) for o in node.operands]
    if node.op == "||":
        texts = [_text_of(o.type) for o in node.operands]

        def concat(columns: Columns, n: int) -> Value:
            values = [_array(text(part(columns, n), n), n, pa.string()) for part, text in zip(parts, texts)]
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
        return lambda value, n: iso_text(_array(value, n))
    return lambda value, n: pa.array(
        [None if v is None else orjson.dumps(v).decode() for v in _array(value, n).to_pylist()], pa.string())


def _isnull(node: IsNull) -> _Fn:
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


def _inlist(node: InList) -> _Fn:
    operand = _compile(node.operand)
    items = [_compile(i) for i in node.items]
    finish = pc.invert if node.negated else (lambda v: v)
    types = {node.operand.type, *(i.type for i in node.items)} - {"null"}
    arrow_type = ARROW_TYPES["double" if "double" in types else node.operand.type]
    if all(isinstance(i, Literal) for i in node.items):
        known = pa.array([i.value for i in node.items if i.value is not None], arrow_type)
        has_null = any(i.value is None for i in node.items)

        def member(columns: Columns, n: int) -> Value:
            value = _array(operand(columns, n), n, arrow_type)
            found = pc.is_in(value, value_set=known)
            # SQL: a null operand, or no match when the list holds NULL, is unknown (null).
            found = pc.if_else(value.is_valid(), found, pa.scalar(None, pa.bool_()))
            if has_null:
                found = pc.if_else(found, True, pa.scalar(None, pa.bool_()))
            return finish(found)

        return member

    def chain(columns: Columns, n: int) -> Value:
        value = _array(operand(columns, n), n, arrow_type)
        found: Value = pa.scalar(False)
        for item in items:
            found = pc.or_kleene(found, pc.equal(value, _array(item(columns, n), n, arrow_type)))
        return finish(found)

    return chain


def _like(node: Like) -> _Fn:
    operand = _compile(node.operand)
    pattern = node.pattern.value
    finish = pc.invert if node.negated else (lambda v: v)
    return lambda columns, n: finish(pc.match_like(_array(operand(columns, n), n, pa.string()), pattern))


def _case(node: Case) -> _Fn:
    conditions = [_compile(c) for c, _ in node.whens]
    results = [_compile(r) for _, r in node.whens]
    otherwise = _compile(node.otherwise) if node.otherwise is not None else None
    arrow_type = ARROW_TYPES[node.type]
    names = [str(i) for i in range(len(conditions))]

    def case(columns: Columns, n: int) -> Value:
        tests = [_when(_array(c(columns, n), n, pa.bool_())) for c in conditions]
        values = [_datum(r(columns, n), n, arrow_type) for r in results]
        if otherwise is not None:
            values.append(_datum(otherwise(columns, n), n, arrow_type))
        return pc.case_when(pa.StructArray.from_arrays(tests, names), *values)

    return case


def _when(test: pa.Array) -> pa.Array:
    """A WHEN condition for case_when, where null is false."""
    return test.fill_null(_FALSE) if test.null_count else test


def _datum(value: Value, n: int, type_: pa.DataType) -> Value:
    """A case_when branch as `type_`, like `_array` but scalars stay scalars: the kernel
    broadcasts them itself, so a `THEN 'hot'` needs no column of n copies."""
    if not isinstance(value, pa.Scalar):
        return _array(value, n, type_)
    if not value.is_valid:
        return pa.scalar(None, type_)
    return value if value.type == type_ else pc.cast(value, type_, safe=False)


def _call(node: Call) -> _Fn:
    args = [_compile(a) for a in node.args]
    name = node.name
    arrow_type = ARROW_TYPES[node.type]
    if name == "coalesce":
        return lambda columns, n: pc.coalesce(*(_array(a(columns, n), n, arrow_type) for a in args))
    if name in ("lower", "upper", "length"):
        kernel = {"lower": pc.utf8_lower, "upper": pc.utf8_upper, "length": pc.utf8_length}[name]
        return lambda columns, n: pc.cast(kernel(args[0](columns, n)), arrow_type)
    if name == "substr":
        return _substr(node, args)
    if name == "abs":
        if node.type == "double":
            return lambda columns, n: pc.abs(args[0](columns, n))
        return lambda columns, n: _int_op(pc.abs_checked, abs, args[0](columns, n))
    if name in ("floor", "ceil", "round"):
        return _rounding(node, args[0])
    if name == "date_trunc":
        unit = node.args[0].value
        return lambda columns, n: pc.floor_temporal(args[1](columns, n), unit=unit)
    # epoch: seconds since 1970 as a double
    return lambda columns, n: pc.divide(
        pc.cast(pc.cast(args[0](columns, n), pa.int64()), pa.float64(), safe=False), 1e6)


def _rounding(node: Call, operand: _Fn) -> _Fn:
    if node.type == "int":
        digits = node.args[1].value if len(node.args) == 2 else 0
        if node.name != "round" or digits >= 0:
            return operand
        unit = 10 ** -digits

        def round_int(value: int) -> int:
            # Half away from zero, exactly, on Python integers.
            sign = -1 if value < 0 else 1
            return sign * ((abs(value) + unit // 2) // unit) * unit

        return lambda columns, n: _int_rows(round_int, operand(columns, n))
    if node.name == "floor":
        return lambda columns, n: pc.floor(operand(columns, n))
    if node.name == "ceil":
        return lambda columns, n: pc.ceil(operand(columns, n))
    digits = node.args[1].value if len(node.args) == 2 else 0
    return lambda columns, n: _finite(
        pc.round(operand(columns, n), ndigits=digits, round_mode="half_towards_infinity"))


def _substr(node: Call, args: list[_Fn]) -> _Fn:
    """SQL substr: characters start..start+count-1 (1-based), clipped to the string."""
    literal = all(isinstance(a, Literal) for a in node.args[1:])
    if literal and all(a.value is not None for a in node.args[1:]):
        start = node.args[1].value
        count = node.args[2].value if len(node.args) == 3 else None
        if count is not None and count < 0:
            return lambda columns, n: pa.scalar(None, pa.string())
        begin = max(start - 1, 0)
        stop = None if count is None else max(start - 1 + count, 0)
        if stop is not None and stop <= begin:
            return lambda columns, n: pc.if_else(pc.is_valid(args[0](columns, n)), "", None)
        return lambda columns, n: pc.utf8_slice_codeunits(args[0](columns, n), begin, stop)

    def per_row(columns: Columns, n: int) -> pa.Array:
        lists = [_array(a(columns, n), n).to_pylist() for a in args]
        if len(lists) == 2:
            lists.append([0] * n)
            whole = True
        else:
            whole = False
        out = []
        for text, start, count in zip(*lists):
            if text is None or start is None or count is None or (not whole and count < 0):
                out.append(None)
                continue
            begin = max(start - 1, 0)
            stop = len(text) if whole else max(start - 1 + count, 0)
            out.append(text[begin:stop] if stop > begin else "")
        return pa.array(out, pa.string())

    return per_row


_COMPILERS: dict[type, Callable[[Any], _Fn]] = {
    Literal: _literal, Column: _column, Unary: _unary, Binary: _binary, Nary: _nary,
    IsNull: _isnull, InList: _inlist, Like: _like, Case: _case, Call: _call,
}
