"""Values as a compiled expression sees them: an Arrow array of one value per row, or a
scalar standing for that value in every row; and the conversions between the two."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

import numpy as np
import pyarrow as pa

__all__ = ["FALSE", "Columns", "Evaluator", "Fn", "Value", "as_array", "true_mask"]

Value: TypeAlias = pa.Array | pa.Scalar
Columns = Mapping[str, pa.Array]
# A compiled expression: (columns, row count) → an Arrow array of the expression's type.
Evaluator = Callable[[Columns, int], pa.Array]
# A compiled part of one: the same arguments, an array or a scalar.
Fn = Callable[[Columns, int], Value]

FALSE = pa.scalar(False)


def true_mask(value: pa.Array) -> np.ndarray:
    """A boolean array as a numpy mask in which null counts as false."""
    if value.null_count:  # fill_null is a kernel call; most masks have no null to fill
        value = value.fill_null(FALSE)
    mask: np.ndarray = value.to_numpy(zero_copy_only=False)
    return mask


def as_array(value: Value, n: int, type_: pa.DataType | None = None) -> pa.Array:
    """`value` as an array of `n` rows (a scalar repeated), cast to `type_` when given (an
    unsafe cast: int64 → double may round past 2**53; it never raises)."""
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Scalar):
        if not value.is_valid:
            return pa.nulls(n, type_ or value.type)
        value = pa.repeat(value, n)
    if type_ is not None and value.type != type_ and type_ != pa.null():
        value = value.cast(type_, safe=False)
    return value
