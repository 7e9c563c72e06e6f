"""What the CLI prints: aligned plain-text tables, one JSON document for `--json`, and the
readable forms of a pipeline's status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["cell", "placement", "print_json", "print_pipeline", "print_platform", "table"]


def print_json(data: Any, *, compact: bool = False) -> None:
    print(json.dumps(data, default=str) if compact else json.dumps(data, indent=2, default=str), flush=compact)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, empty: str = "(none)",
           names: bool = False) -> None:
    """Rows as aligned columns, numbers right-aligned, under upper-case headers (or, with
    `names`, the field names as they are, to be used in `--fields` or `--by`)."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not rows:
        print(empty)
        return
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    print(line(list(columns) if names else [c.upper().replace("_", " ") for c in columns]))
    for row_cells in cells:
        print(line(row_cells))


def placement(kind: str, host: str | None) -> str:
    """A pipeline's placement in a table: `dedicated`, or `shared` with its host actor's name."""
    return f"shared ({host})" if kind == "shared" and host else kind


def print_pipeline(p: Any, as_json: bool) -> int:
    """One pipeline (a `Client.get` answer) in full: JSON, or a readable summary."""
    if as_json:
        print_json({"id": p.id, "status": p.status, "restarts": p.restarts, "last_error": p.last_error,
                "version": p.version, "counters": p.counters, "counters_at": p.counters_at,
                "waiting_in_log": p.waiting_in_log, "next_restart_at": p.next_restart_at, "node": p.node,
                "placement": p.placement, "host": p.host,
                "source_state": p.source_state, "spec": p.spec})
        return 0
    print(f"{p.id}: {p.status} (version {p.version}, {p.restarts} restarts)")
    if p.last_error:
        print(f"  last error:     {p.last_error}")
    if p.next_restart_at:
        print(f"  next restart:   {p.next_restart_at}")
    print(f"  source:         {p.spec.get('source', {}).get('kind', '?')}")
    if p.source_state:
        _print_source_state(p.source_state)
    print(f"  waiting in log: {p.waiting_in_log}")
    print(f"  node:           {p.node or '-'}")
    print(f"  placement:      {placement(p.placement, p.host)}")
    print(f"  counters as of: {p.counters_at or 'never'}")
    width = max((len(name) for name in p.counters), default=0)
    for name, value in p.counters.items():
        print(f"    {name:<{width}}  {cell(value)}")
    if p.source_state:
        print("  source state:")
        width = max(len(name) for name in p.source_state)
        for name, value in p.source_state.items():
            print(f"    {name:<{width}}  {cell(value)}")
    return 0


_SOURCE_LINES = (("last poll", "last_poll_at"), ("last success", "last_ok_at"), ("last error", "last_error"),
                 ("cursor", "cursor"), ("next poll", "next_poll_at"))


def _print_source_state(state: dict[str, Any]) -> None:
    """A poller's state: the times and error first, then its counts on one line."""
    for label, key in _SOURCE_LINES:
        if key in state:
            print(f"  {label + ':':<16}{cell(state[key]) or '-'}")
    counts = [f"{key} {state[key]}" for key in ("polls", "failures", "records", "skipped", "pages") if key in state]
    if counts:
        print(f"  {'source counts:':<16}{', '.join(counts)}")


def print_platform(url: str, home: str, health: dict[str, Any], pipelines: Sequence[Any], run: Any,
                   as_json: bool) -> int:
    """`dash-ray status`: where the platform is, whether it answers, its pipelines by status,
    and what waits in their logs; `run` is the run file's `RunInfo` (None with DASH_URL)."""
    by_status: dict[str, int] = {}
    for p in pipelines:
        by_status[p.status] = by_status.get(p.status, 0) + 1
    waiting = sum(p.waiting_in_log for p in pipelines)
    if as_json:
        print_json({"url": url, "health": health, "ray_address": run.ray_address if run else None, "home": home,
                    "pipelines": by_status, "waiting_in_log": waiting})
        return 0
    print(f"Dash at {url}: {health.get('status', 'unknown')}")
    if run is not None:
        where = f" (local, pid {run.local.pid})" if run.local is not None else " (joined cluster)"
        print(f"  ray:        {run.ray_address}{where}")
    print(f"  home:       {home}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none"
    print(f"  pipelines:  {len(pipelines)} ({summary})")
    if waiting:
        print(f"  waiting:    {waiting} acknowledged records in logs, not yet in the lake")
    for p in pipelines:
        if p.status != "running":
            print(f"  {p.id}: {p.status}" + (f": {p.last_error}" if p.last_error else ""))
    return 0
