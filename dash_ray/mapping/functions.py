"""The built-in functions of expressions (coalesce, lower, upper, length, substr, abs,
floor, ceil, round, date_trunc, epoch) on Arrow, compiled for their compiled arguments.

Like every operator, a function never raises for any data: null in gives null out, and a
result that does not exist is null (substr with a negative count, abs of the smallest int,
a rounded double that is not finite).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.mapping.arithmetic import finite, int_op, int_rows
from dash_ray.mapping.casts import ARROW_TYPES
from dash_ray.mapping.expressions import Call, Literal, literal_value
from dash_ray.mapping.values import Columns, Fn, as_array

__all__ = ["compile_call"]


def compile_call(node: Call, args: list[Fn]) -> Fn:
    """The function `node` names, over `args` (its arguments, compiled in order)."""
    name = node.name
    arrow_type = ARROW_TYPES[node.type]
    if name == "coalesce":
        return lambda columns, n: pc.coalesce(*(as_array(a(columns, n), n, arrow_type) for a in args))
    if name in ("lower", "upper", "length"):
        kernel = {"lower": pc.utf8_lower, "upper": pc.utf8_upper, "length": pc.utf8_length}[name]
        return lambda columns, n: pc.cast(kernel(args[0](columns, n)), arrow_type)
    if name == "substr":
        return _substr(node, args)
    if name == "abs":
        if node.type == "double":
            return lambda columns, n: pc.abs(args[0](columns, n))
        return lambda columns, n: int_op(pc.abs_checked, abs, args[0](columns, n))
    if name in ("floor", "ceil", "round"):
        return _rounding(node, args[0])
    if name == "date_trunc":
        unit = literal_value(node.args[0])
        return lambda columns, n: pc.floor_temporal(args[1](columns, n), unit=unit)
    # epoch: seconds since 1970 as a double
    return lambda columns, n: pc.divide(
        pc.cast(pc.cast(args[0](columns, n), pa.int64()), pa.float64(), safe=False), 1e6)


def _rounding(node: Call, operand: Fn) -> Fn:
    if node.type == "int":
        digits: int = literal_value(node.args[1]) if len(node.args) == 2 else 0
        if node.name != "round" or digits >= 0:
            return operand
        unit: int = 10 ** -digits

        def round_int(value: int) -> int:
            # Half away from zero, exactly, on Python integers.
            sign = -1 if value < 0 else 1
            return sign * ((abs(value) + unit // 2) // unit) * unit

        return lambda columns, n: int_rows(round_int, operand(columns, n))
    if node.name == "floor":
        return lambda columns, n: pc.floor(operand(columns, n))
    if node.name == "ceil":
        return lambda columns, n: pc.ceil(operand(columns, n))
    digits = literal_value(node.args[1]) if len(node.args) == 2 else 0
    return lambda columns, n: finite(
        pc.round(operand(columns, n), ndigits=digits, round_mode="half_towards_infinity"))


def _substr(node: Call, args: list[Fn]) -> Fn:
    """SQL substr: characters start..start+count-1 (1-based), clipped to the string."""
    literal = all(isinstance(a, Literal) for a in node.args[1:])
    if literal and all(literal_value(a) is not None for a in node.args[1:]):
        start: int = literal_value(node.args[1])
        count: int | None = literal_value(node.args[2]) if len(node.args) == 3 else None
        if count is not None and count < 0:
            return lambda columns, n: pa.scalar(None, pa.string())
        begin = max(start - 1, 0)
        stop = None if count is None else max(start - 1 + count, 0)
        if stop is not None and stop <= begin:
            return lambda columns, n: pc.if_else(pc.is_valid(args[0](columns, n)), "", None)
        return lambda columns, n: pc.utf8_slice_codeunits(args[0](columns, n), begin, stop)

    def per_row(columns: Columns, n: int) -> pa.Array:
        lists = [as_array(a(columns, n), n).to_pylist() for a in args]
        if len(lists) == 2:
            lists.append([0] * n)
            whole = True
        else:
            whole = False
        out: list[str | None] = []
        for text, start, count in zip(*lists, strict=True):
            if text is None or start is None or count is None or (not whole and count < 0):
                out.append(None)
                continue
            begin = max(start - 1, 0)
            stop = len(text) if whole else max(start - 1 + count, 0)
            out.append(text[begin:stop] if stop > begin else "")
        return pa.array(out, pa.string())

    return per_row
