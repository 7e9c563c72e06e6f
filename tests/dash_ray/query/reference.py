"""The query semantics of dash_ray.query.model written plainly in Python, row by row: what
both engines must answer (floats within rounding)."""

from __future__ import annotations

from typing import Any

from dash_ray.query.model import Query, iso


def _key(value: Any) -> tuple:
    # Nulls last; strings bytewise.
    if value is None:
        return (1, 0)
    if isinstance(value, str):
        return (0, value.encode())
    return (0, value)


def _shown(column_type: str, value: Any) -> Any:
    if value is None:
        return None
    if column_type == "timestamp":
        return iso(value)
    if column_type == "double":
        return float(value)
    return value


def answer(query: Query, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`rows`: {"seq", "time" (us), field: value (timestamps as us, json as parsed)}."""
    chosen = [r for r in rows if (query.start_us is None or r["time"] >= query.start_us)
              and (query.end_us is None or r["time"] < query.end_us)
              and all(r.get(f.column.name) in f.values for f in query.filters)]
    if not query.aggregate:
        reverse = query.order == "desc"
        chosen.sort(key=lambda r: (r["time"], r["seq"]), reverse=reverse)
        if query.after is not None:
            anchor = next(r for r in rows if r["seq"] == query.after)
            mark = (anchor["time"], anchor["seq"])
            chosen = [r for r in chosen if ((r["time"], r["seq"]) > mark) != reverse and (r["time"], r["seq"]) != mark]
        page = chosen[:query.limit]
        out = [{"seq": r["seq"], "time": iso(r["time"]),
                **{c.name: _shown(c.type, r.get(c.name)) for c in query.fields}} for r in page]
        return {"rows": out, "next": out[-1]["seq"] if len(chosen) > query.limit and out else None}
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in chosen:
        bucket = None if query.bucket_us is None else r["time"] - r["time"] % query.bucket_us
        groups.setdefault((bucket, *(r.get(c.name) for c in query.by)), []).append(r)
    out = []
    for key in sorted(groups, key=lambda k: tuple(_key(v) for v in k)):
        members = sorted(groups[key], key=lambda r: (r["time"], r["seq"]))
        record: dict[str, Any] = {}
        if query.bucket_us is not None:
            record["bucket"] = iso(key[0])
        for column, value in zip(query.by, key[1:], strict=True):
            record[column.name] = _shown(column.type, value)
        for agg in query.aggs:
            if agg.column is None:
                record[agg.name] = len(members)
                continue
            values = [m[agg.column.name] for m in members if m.get(agg.column.name) is not None]
            t = agg.column.type
            if agg.fn == "count":
                record[agg.name] = len(values)
            elif not values:
                record[agg.name] = None
            elif agg.fn == "avg":
                record[agg.name] = sum(values) / len(values)
            elif agg.fn == "sum":
                record[agg.name] = sum(values) if t == "int" else float(sum(values))
            elif agg.fn in ("min", "max"):
                pick = min if agg.fn == "min" else max
                record[agg.name] = _shown(t, pick(values, key=lambda v: v.encode() if isinstance(v, str) else v))
            else:
                record[agg.name] = _shown(t, values[0] if agg.fn == "first" else values[-1])
        out.append(record)
    return {"rows": out[:query.limit]}
