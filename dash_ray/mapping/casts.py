"""Casting values to field types: JSON values read by a path, and expression results.

What each type accepts (anything else is a cast failure, dead-lettered with rule "type"):
- string: text as is; numbers as their JSON text (21.5 → "21.5", 2.0 → "2.0", 1e20 → "1e+20"); true/false as
  "true"/"false"; objects and arrays are refused (declare the field json for those).
- int: integers in the signed 64-bit range; numbers with no fractional part (2.0, 1e3);
  text of an optional sign and decimal digits, surrounding ASCII whitespace ignored ("21").
  21.5, "21.5", "abc", true and anything out of range are refused (never rounded).
- double: any number; text in decimal or exponent form ("21.5", " -1e3 "). Text for NaN or
  infinity, and text too large for a double, is refused.
- bool: true/false; the numbers 0 and 1; the text "true", "false", "1", "0" in any case.
- timestamp: see `dash_ray.mapping.timestamps`.
- json: any value, written as compact JSON text (keys in their input order); a value nested
  more than 255 levels deep cannot be written and is refused.
Missing values and JSON null are not cast: they take the field's default.

Expression results are cast by the same rules, after being turned into their JSON value
(timestamps become ISO 8601 text: `2024-05-01T12:00:00.500000Z`, or `…:00Z` without a fraction).
A cast that can never succeed (bool to int, timestamp to double, …) is refused when the mapping
compiles.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.mapping.timestamps import TIMESTAMP, parse_iso_text, parse_timestamps

__all__ = ["ARROW_TYPES", "can_store", "cast_parsed", "cast_result", "cast_values", "iso_text", "json_bytes",
           "json_text", "result_values", "show"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP,
    "json": pa.string(),
    "null": pa.null(),
}
_NONE = type(None)
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_WHITESPACE = " \t\r\n"
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_SHOW_LIMIT = 120
_FAIL = object()
# (expression type, field type) pairs that can never cast.
_NEVER = frozenset({("bool", "int"), ("bool", "double"), ("bool", "timestamp"),
                    ("timestamp", "int"), ("timestamp", "double"), ("timestamp", "bool")})


def json_text(value: Any) -> str:
    """A JSON value as compact JSON text."""
    return orjson.dumps(value).decode()


def json_bytes(value: Any) -> bytes | None:
    """A parsed JSON value as compact JSON, or None when it nests deeper than orjson writes
    (255 levels; it reads 1024)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None


def show(value: Any) -> str:
    """A value for a dead-letter reason: JSON text, cut at a readable length."""
    data = json_bytes(value)
    if data is None:
        return "a value nested more than 255 levels deep"
    text = data.decode()
    return text if len(text) <= _SHOW_LIMIT else text[:_SHOW_LIMIT] + "…"


def can_store(expr_type: str, field_type: str) -> bool:
    """Whether an expression of `expr_type` can (at least sometimes) cast to `field_type`."""
    return (expr_type, field_type) not in _NEVER


def cast_values(
    values: list[Any], type_: str, *, unit: str | None = None, fmt: str | None = None,
    timezone: str | None = None,
) -> tuple[pa.Array, np.ndarray | None]:
    """JSON values as an Arrow array of `type_`, and a mask of values that failed to cast
    (None when none did). None stays null and is never a failure."""
    if type_ == "timestamp":
        array, failed = parse_timestamps(values, unit=unit, fmt=fmt, timezone=timezone)
        return array, failed if failed.any() else None
    target = ARROW_TYPES[type_]
    if type_ == "json":
        try:
            return pa.array([None if v is None else orjson.dumps(v) for v in values], target), None
        except orjson.JSONEncodeError:
            out = [None if v is None else json_bytes(v) for v in values]
            failed = np.array([v is not None and o is None for v, o in zip(values, out, strict=True)], dtype=bool)
            return pa.array(out, target), failed
    fast = _FAST.get(type_, frozenset())
    if set(map(type, values)) <= fast:
        try:
            return pa.array(values, target), None
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # an integer beyond 64 bits: sort it out value by value
    convert = _CONVERT[type_]
    out = [None if v is None else convert(v) for v in values]
    failed = np.array([v is _FAIL for v in out], dtype=bool)
    if failed.any():
        out = [None if v is _FAIL else v for v in out]
        return pa.array(out, target), failed
    return pa.array(out, target), None


def cast_parsed(
    values: list[Any], type_: str, *, unit: str | None = None, fmt: str | None = None,
    timezone: str | None = None,
) -> tuple[pa.Array, np.ndarray | None]:
    """`cast_values` for values as orjson parses them: None, bool, int, float, str, list, dict.

    `cast_values` lists the kinds of values first, which costs about as much again as the
    conversion. Of the parsed kinds, Arrow's converter takes for a string column only str, for
    a bool column only bool, and for a double column int, float and bool: so here it is tried
    first, and when it refuses (or a double column held a bool) `cast_values` sorts it out.
    Timestamps without a format are the same: all text (or None) is read as ISO 8601."""
    if type_ == "timestamp" and fmt is None:
        try:
            text = pa.array(values, pa.string())
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        else:
            array, failed = parse_iso_text(text, timezone=timezone)
            return array, failed if failed.any() else None
    if type_ in _EXACT or type_ == "double":
        try:
            array = pa.array(values, ARROW_TYPES[type_])
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        else:
            if type_ != "double" or not _had_bool(values, array):
                return array, None
    return cast_values(values, type_, unit=unit, fmt=fmt, timezone=timezone)


def _had_bool(values: list[Any], doubles: pa.Array) -> bool:
    """Whether Arrow made a double of a JSON true or false (which are not numbers here). They
    became 1.0 or 0.0, so only the values that came out as those need a look."""
    numbers = doubles.to_numpy(zero_copy_only=False)  # nulls read as NaN
    suspects = np.flatnonzero((numbers == 0.0) | (numbers == 1.0))
    return any(type(values[i]) is bool for i in suspects.tolist())


def _to_string(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return json_text(value)
    return _FAIL


def _to_int(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        return value if _INT_MIN <= value <= _INT_MAX else _FAIL
    if kind is float:
        if value.is_integer() and _INT_MIN <= value < 2.0**63:
            return int(value)
        return _FAIL
    if kind is str:
        text = value.strip(_WHITESPACE)
        if _INT_TEXT.fullmatch(text):
            number = int(text)
            return number if _INT_MIN <= number <= _INT_MAX else _FAIL
    return _FAIL


def _to_double(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    if kind is str:
        text = value.strip(_WHITESPACE)
        if _FLOAT_TEXT.fullmatch(text):
            number = float(text)
            return number if number - number == 0.0 else _FAIL  # refuses inf (nan cannot match)
    return _FAIL


def _to_bool(value: Any) -> Any:
    kind = type(value)
    if kind is bool:
        return value
    if (kind is int or kind is float) and value in (0, 1):
        return value == 1
    if kind is str:
        text = value.strip(_WHITESPACE).lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    return _FAIL


_CONVERT = {"string": _to_string, "int": _to_int, "double": _to_double, "bool": _to_bool}
_FAST = {
    "string": frozenset({str, _NONE}),
    "int": frozenset({int, _NONE}),
    "double": frozenset({int, float, _NONE}),
    "bool": frozenset({bool, _NONE}),
}
# Types whose Arrow conversion accepts no parsed JSON value beyond those in _FAST (see cast_parsed).
_EXACT = frozenset({"string", "bool"})


def iso_text(timestamps: pa.Array) -> pa.Array:
    """timestamp[us, UTC] values as ISO 8601 text, `2024-05-01T12:00:00Z` or with `.123456`
    when there is a fraction (the form Python's isoformat gives)."""
    text = pc.strftime(timestamps, format="%Y-%m-%dT%H:%M:%SZ")
    return pc.replace_substring(text, ".000000Z", "Z")


def result_values(array: pa.Array, expr_type: str) -> list[Any]:
    """An expression result as the JSON values it stands for."""
    values: list[Any] = array.to_pylist() if expr_type != "timestamp" else iso_text(array).to_pylist()
    if expr_type == "json":
        return [None if v is None else orjson.loads(v) for v in values]
    return values


def cast_result(
    array: pa.Array, expr_type: str, type_: str, *, unit: str | None = None, fmt: str | None = None,
    timezone: str | None = None,
) -> tuple[pa.Array, np.ndarray | None, list[Any] | None]:
    """An expression result as a field of `type_`: the array, the failure mask (or None) and,
    when something failed, the JSON values that were cast (for the dead letters)."""
    if expr_type == type_:
        return array, None, None
    if expr_type == "null":
        return pa.nulls(len(array), ARROW_TYPES[type_]), None, None
    if expr_type == "int" and type_ == "double":
        return array.cast(pa.float64(), safe=False), None, None
    if type_ == "string" and expr_type in ("int", "bool"):
        return (array.cast(pa.string()) if expr_type == "int"
                else pc.if_else(array, "true", "false")), None, None
    if type_ == "string" and expr_type == "timestamp":
        return iso_text(array), None, None
    values = result_values(array, expr_type)
    out, failed = cast_values(values, type_, unit=unit, fmt=fmt, timezone=timezone)
    return out, failed, values if failed is not None else None
