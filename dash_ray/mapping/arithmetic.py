"""Arithmetic on Arrow values with SQL's answers, where an operation with no result gives
null rather than an error for the whole batch: an integer result beyond 64 bits, a double
result that is not finite, modulo by zero."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.mapping.casts import ARROW_TYPES
from dash_ray.mapping.expressions import Expr, Literal
from dash_ray.mapping.values import Fn, Value, as_array

__all__ = ["as_double", "finite", "int_op", "int_rows", "modulo"]

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def as_double(node: Expr, fn: Fn) -> Fn:
    """An int operand of a double operation, as double (rounded past 2**53, never raising)."""
    if node.type != "int":
        return fn
    if isinstance(node, Literal):
        # A literal (`temp_c * 9`) casts to the same scalar on every call: cast it once, here.
        constant = pc.cast(fn({}, 0), pa.float64(), safe=False)
        return lambda columns, n: constant
    return lambda columns, n: pc.cast(fn(columns, n), pa.float64(), safe=False)


def int_op(checked: Callable[..., Value], plain: Callable[..., int], *args: Value) -> Value:
    """An int64 kernel whose overflowing results become null (Arrow would raise for the batch)."""
    try:
        return checked(*args)
    except pa.ArrowInvalid:
        return int_rows(plain, *args)


def int_rows(plain: Callable[..., int], *args: Value) -> Value:
    """`plain` on Python ints row by row; null in or a result past 64 bits gives null."""
    arrays = [a for a in args if not isinstance(a, pa.Scalar)]
    n = len(arrays[0]) if arrays else 1
    lists = [as_array(a, n).to_pylist() for a in args]
    out: list[int | None] = []
    for row in zip(*lists, strict=True):
        if None in row:
            out.append(None)
            continue
        value = plain(*row)
        out.append(value if _INT_MIN <= value <= _INT_MAX else None)
    return pa.array(out, pa.int64()) if arrays else pa.scalar(out[0], pa.int64())


def finite(value: Value) -> Value:
    """A double result with its infinities and NaNs made null."""
    if isinstance(value, pa.Array):
        # Nearly always there is nothing to null out, which numpy shows for a fraction of the
        # cost of the two kernels below: nulls read as NaN there, so no row needs nulling
        # exactly when the finite values and the nulls add up to the whole array.
        count = np.count_nonzero(np.isfinite(value.to_numpy(zero_copy_only=False)))
        if count + value.null_count == len(value):
            return value
    return pc.if_else(pc.is_finite(value), value, pa.scalar(None, pa.float64()))


def modulo(left: Value, right: Value, n: int, type_: str) -> pa.Array:
    """Truncated modulo (the sign of the dividend), as in SQL; by zero gives null."""
    dtype = np.int64 if type_ == "int" else np.float64
    a, b = as_array(left, n), as_array(right, n)
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
    mask: np.ndarray = value.to_numpy(zero_copy_only=False).astype(bool, copy=False)
    return mask
