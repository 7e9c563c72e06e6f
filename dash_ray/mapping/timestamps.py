"""Reading timestamps out of JSON values: ISO 8601 text, strftime formats and epoch numbers.
Every result is UTC microseconds within years 0001–9999 (what Python's datetime can hold).

- Numbers are epoch values in the field's `unit` (s, ms, us, ns; seconds when no unit is
  given), with or without a `format`. Integers convert exactly (ns are floored to µs); a
  fractional number is rounded to the nearest microsecond.
- Text without a `format` must be ISO 8601 / RFC 3339 in the extended form:
  `YYYY-MM-DD[(T|t| )HH[:MM[:SS[(.|,)fraction]]]][Z|z|±HH[[:]MM]]` — digits beyond
  microseconds are truncated; an offset needs a time. Text without an offset is in the field's
  `timezone` (an IANA name), UTC when none. Leap seconds, 24:00 and surrounding whitespace are
  not accepted.
- With a `format` (Python strptime codes; whitespace in the format matches any whitespace,
  case is ignored, as in Python), text is read by Python's `datetime.strptime`. A format
  without %z reads local time in the field's timezone. Locale- and week-based codes
  (%c %x %X %U %W %G %V %u %w) are refused at compile time.
- Local times that a daylight-saving change makes ambiguous resolve to the earlier instant;
  local times that it skips resolve to the moment the clocks changed.
- Booleans, objects and arrays are never timestamps.

Text is parsed by Arrow's vectorised ISO 8601 kernel (whose grammar is the one above); when a
batch mixes forms, or holds text Arrow refuses, values are parsed one at a time by the same
kernel, so the result for one value never depends on the other values in its batch.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "MAX_US",
    "MIN_US",
    "TIMESTAMP",
    "check_format",
    "check_timezone",
    "parse_iso_scalar",
    "parse_iso_text",
    "parse_timestamps",
]

TIMESTAMP = pa.timestamp("us", tz="UTC")
_NAIVE = pa.timestamp("us")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_NAIVE = _EPOCH.replace(tzinfo=None)  # for wall-clock times without a zone (localised after)
MIN_US = (dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc) - _EPOCH) // dt.timedelta(microseconds=1)
MAX_US = (dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc) - _EPOCH) // dt.timedelta(
    microseconds=1)
_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}
_TEXT = frozenset({str, type(None)})

# An offset follows a time (`…T03`, `…:04`, `…:05.123`); a date alone ends in "-DD", not an offset.
_OFFSET_AT_END = r"(?:[T ][0-9]{2}|:[0-9]{2}|\.[0-9]+)(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"
_LONG_FRACTION = re.compile(r"(\.[0-9]{6})[0-9]+")

_FORMAT_CODES = frozenset("aAbBdfHIjmMpSyYzZ%")
_REFUSED_CODES = frozenset("cxXUWGVuw")
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")


def check_timezone(name: str) -> str | None:
    """None when `name` is an IANA time zone both Python and Arrow know, else what is wrong.

    The name is checked against the tz database's own list before Arrow sees it, so no
    spec can make it open a file outside the zoneinfo directory."""
    if not _ZONE_NAME.fullmatch(name) or ".." in name or name not in _zone_names():
        return f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
    try:
        pc.assume_timezone(pa.array([0], _NAIVE), timezone=name)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return f"time zone {name!r} is not usable here: {exc}"
    return None


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def check_format(fmt: str) -> str | None:
    """None when `fmt` uses only the strptime codes we accept, else what is wrong."""
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            code = fmt[i + 1] if i + 1 < len(fmt) else ""
            if code in _REFUSED_CODES:
                return f"format code %{code} is locale- or week-based and is not supported"
            if code not in _FORMAT_CODES:
                return f"unknown format code %{code}" if code else "format ends with a lone %"
            i += 2
        else:
            i += 1
    try:
        # strptime compiles the format into a regular expression on first use; a format it
        # cannot compile (a repeated directive such as "%H:%M %H") fails for every value.
        dt.datetime.strptime("", fmt)  # noqa: DTZ007 - only compiles the format
    except ValueError:
        pass  # the empty text does not match: the format itself compiled
    except re.error as exc:
        return f"format {fmt!r} cannot parse anything: {exc.msg} (is a directive repeated?)"
    return None


def parse_iso_scalar(text: str) -> int | None:
    """One ISO 8601 text as UTC microseconds (no offset means UTC), or None."""
    array, _ = parse_timestamps([text])
    return array[0].value if array[0].is_valid else None


def parse_timestamps(
    values: list[Any], *, unit: str | None = None, fmt: str | None = None, timezone: str | None = None
) -> tuple[pa.Array, np.ndarray]:
    """JSON values as a timestamp[us, UTC] array and a mask of the values that are present
    (not None) but could not be read (the caller dead-letters those)."""
    n = len(values)
    kinds = set(map(type, values))
    strings = None
    if str in kinds:
        strings = _from_text(values, fmt, timezone, only_text=kinds <= _TEXT)
    numbers = None
    if kinds & {int, float}:
        numbers = _from_numbers(values, unit or "s")
    if strings is None and numbers is None:
        result = pa.nulls(n, TIMESTAMP)
    elif numbers is None:
        result = strings
    elif strings is None:
        result = numbers
    else:
        result = pc.coalesce(strings, numbers)
    if not result.null_count:
        return result, np.zeros(n, dtype=bool)
    valid = result.is_valid().to_numpy(zero_copy_only=False)
    present = np.array([v is not None for v in values], dtype=bool)
    return result, present & ~valid


def parse_iso_text(text: pa.Array, *, timezone: str | None = None) -> tuple[pa.Array, np.ndarray]:
    """`parse_timestamps` without a format for values that are all text or None, given as a
    string array: the same timestamps and mask of present values that could not be read."""
    result = _from_iso(text, timezone)
    if not result.null_count:
        return result, np.zeros(len(text), dtype=bool)
    present = text.is_valid().to_numpy(zero_copy_only=False)
    return result, present & ~result.is_valid().to_numpy(zero_copy_only=False)


def _from_numbers(values: list[Any], unit: str) -> pa.Array:
    per = _PER_UNIT[unit]
    micros: list[int | None] = []
    append = micros.append
    for v in values:
        kind = type(v)
        if kind is int:
            append(v * per if per is not None else v // 1000)
        elif kind is float:
            scaled = v * per if per is not None else v / 1000
            append(round(scaled) if math.isfinite(scaled) else None)
        else:
            append(None)
    return _in_range(micros)


def _in_range(micros: list[int | None]) -> pa.Array:
    checked = [m if m is not None and MIN_US <= m <= MAX_US else None for m in micros]
    return pa.array(checked, TIMESTAMP)


def _from_text(values: list[Any], fmt: str | None, timezone: str | None, *, only_text: bool) -> pa.Array:
    """The text values (`only_text`: there are no others but None) as timestamps; others are null."""
    if fmt is not None:
        return _from_format(values, fmt, timezone)
    if not only_text:
        values = [v if type(v) is str else None for v in values]
    return _from_iso(pa.array(values, pa.string()), timezone)


def _from_iso(text: pa.Array, timezone: str | None) -> pa.Array:
    text = pc.ascii_upper(text)
    # The common batches are all-offset or all-local text: one vectorised cast each.
    try:
        return _bounded(text.cast(TIMESTAMP))
    except pa.ArrowInvalid:
        pass
    try:
        return _bounded(_localize(text.cast(_NAIVE), timezone))
    except pa.ArrowInvalid:
        pass
    text = pa.array([_normalize(s) for s in text.to_pylist()], pa.string())
    with_offset = pc.match_substring_regex(text, _OFFSET_AT_END)
    aware = _cast(pc.if_else(with_offset, text, None), TIMESTAMP)
    local = _localize(_cast(pc.if_else(with_offset, None, text), _NAIVE), timezone)
    return _bounded(pc.coalesce(aware, local))


def _cast(text: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast ISO text; values Arrow refuses (Feb 30, 24:00, bad text) become null. A failing
    cast is retried on halves, so k bad values cost O(k log n) casts, not n."""
    try:
        return text.cast(target)
    except pa.ArrowInvalid:
        if len(text) == 1:
            return pa.nulls(1, target)
    middle = len(text) // 2
    return pa.concat_arrays([_cast(text.slice(0, middle), target), _cast(text.slice(middle), target)])


def _normalize(text: str | None) -> str | None:
    if text is None:
        return None
    return _LONG_FRACTION.sub(r"\1", text.replace(",", "."))


def _localize(naive: pa.Array, timezone: str | None) -> pa.Array:
    if timezone is None or timezone == "UTC" or naive.null_count == len(naive):
        return naive.cast(TIMESTAMP)
    local = pc.assume_timezone(naive, timezone=timezone, ambiguous="earliest", nonexistent="latest")
    return local.cast(TIMESTAMP)


def _bounded(result: pa.Array) -> pa.Array:
    """Null out instants outside years 0001-9999 (an offset can push a parsed time past them)."""
    if not result.null_count:
        # The usual case, all inside, shown on a zero-copy numpy view, with no kernel to run.
        micros = result.to_numpy().view(np.int64)
        if not len(micros) or (micros.min() >= MIN_US and micros.max() <= MAX_US):
            return result
    view = result.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    inside = (view >= MIN_US) & (view <= MAX_US)
    if inside.all():
        return result
    return pc.if_else(pa.array(inside), result, None)


def _from_format(values: list[Any], fmt: str, timezone: str | None) -> pa.Array:
    aware: list[int | None] = []
    naive: list[int | None] = []
    for v in values:
        parsed = None
        if type(v) is str:
            try:
                parsed = dt.datetime.strptime(v, fmt)  # noqa: DTZ007 - aware when fmt has %z, else localised below
            except (ValueError, OverflowError):
                parsed = None
        if parsed is None:
            aware.append(None)
            naive.append(None)
        elif parsed.tzinfo is not None:
            aware.append((parsed - _EPOCH) // dt.timedelta(microseconds=1))
            naive.append(None)
        else:
            aware.append(None)
            naive.append((parsed - _EPOCH_NAIVE) // dt.timedelta(microseconds=1))
    local = _localize(pa.array(naive, _NAIVE), timezone)
    return _bounded(pc.coalesce(pa.array(aware, TIMESTAMP), local))
