"""The rollup partials of a table of silver rows, computed once for the lake and PostgreSQL:
the commit step writes a range's rows to the lake's silver (with their partials) and then
offers the very same table to the PostgreSQL follower, whose merge needs the same partials.
Computing them is the costliest part of a rollup (about 1 µs a row and granularity here), so
they are kept as long as their table lives (a weak reference to it: Arrow tables are
immutable) and looked up by the table's identity; another table, even an equal one, gets them
computed again."""

from __future__ import annotations

import threading
import weakref

import pyarrow as pa

from dash_ray.silver.rollup import RollupPlan, partials

__all__ = ["kept", "partials_of"]

# A table's partials can be dropped from any thread (when the table is freed): a reentrant lock.
_lock = threading.RLock()
_kept: dict[int, tuple[weakref.ref[pa.Table], dict[tuple[str, str], pa.Table]]] = {}


def partials_of(rows: pa.Table, plan: RollupPlan, granularity: str) -> pa.Table:
    """`dash_ray.silver.rollup.partials(rows, plan, granularity)`, computed once per table,
    plan and granularity while the table lives. Thread-safe."""
    key = id(rows)
    with _lock:
        entry = _kept.get(key)
        if entry is not None and entry[0]() is rows:
            found = entry[1].get((plan.key, granularity))
            if found is not None:
                return found
    result = partials(rows, plan, granularity)
    with _lock:
        entry = _kept.get(key)
        if entry is None or entry[0]() is not rows:
            entry = (weakref.ref(rows, lambda _: _forget(key)), {})
            _kept[key] = entry
        entry[1][(plan.key, granularity)] = result
    return result


def _forget(key: int) -> None:
    with _lock:
        entry = _kept.get(key)
        if entry is not None and entry[0]() is None:
            del _kept[key]


def kept() -> int:
    """How many tables' partials are kept (for tests)."""
    with _lock:
        return len(_kept)
