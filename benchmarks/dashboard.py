"""Benchmark: a 6-widget dashboard in Chromium over a large pipeline, and the page's main
thread while records stream in, beside baselines measured in the same run.

    .venv/bin/python benchmarks/dashboard.py [--rows 1000000] [--days 7] [--loads 5] [--rate 1000] [--seconds 20]
                                             [--settle 150]

The platform on its defaults (a fresh home, its own Ray instance), one push pipeline of
readings (50 devices) seeded with `--rows` rows spread over the last `--days` days, signed
pushes of 10,000 records, then waited for until stored. The dashboard: two stats (count,
average), two lines (average by device, count), a bar (average by device) and a table,
over `?range=<days>d`. Measured `--settle` seconds after the rows are stored, so the background
compaction (every 60 s, `storage.compaction`) has merged the flushes' small files, as it has
on a pipeline that has run a while.
- Time to draw: from navigation start to the moment every widget has drawn once (the page's
  `dash:drawn` performance mark), median of `--loads` loads in a fresh tab signed in (the token
  in local storage). Baseline: the same six query API calls from Python, one after another.
- Main thread: Chromium's `TaskDuration` (CDP `Performance.getMetrics`) over `--seconds` while
  `--rate` records a second stream into the pipeline (100 every 0.1 s) with the dashboard
  live over the last 15 minutes, as a share of the wall time. Baseline: the same page for the
  same time with nothing streaming.
Goals (issue 26): all drawn < 1.5 s; main thread < 50% busy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("DASH_TEST_CHROMIUM", "/usr/bin/chromium")
DEVICES = 50
SPEC = {"id": "dash-bench", "mapping": {"fields": {
    "time": {"path": "$.ts", "type": "timestamp"},
    "device": {"path": "$.device", "type": "string"},
    "temp_c": {"path": "$.temp", "type": "double"},
    "humidity": {"path": "$.hum", "type": "double"}}},
    "flush": {"records": 100_000, "seconds": 1.0}}
WIDGETS = [
    {"kind": "stat", "title": "Readings", "agg": "count"},
    {"kind": "stat", "title": "Average temperature", "agg": "avg:temp_c", "unit": "°C"},
    {"kind": "line", "title": "Temperature by device", "fields": ["temp_c"], "by": "device", "unit": "°C"},
    {"kind": "line", "title": "Readings per bucket", "agg": "count"},
    {"kind": "bar", "title": "Humidity by device", "agg": "avg:humidity", "by": "device", "unit": "%"},
    {"kind": "table", "title": "Newest", "fields": ["device", "temp_c", "humidity"], "limit": 20},
]


def readings(start: dt.datetime, step: dt.timedelta, first: int, count: int) -> list[dict[str, Any]]:
    return [{"ts": (start + (first + i) * step).isoformat(), "device": f"sensor-{(first + i) % DEVICES}",
             "temp": 20 + ((first + i) % 17) * 0.5, "hum": 40 + ((first + i) % 23)} for i in range(count)]


def seed(client: Any, secret: str, rows: int, days: int) -> float:
    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(days=days) + dt.timedelta(minutes=1)
    step = (dt.timedelta(days=days) - dt.timedelta(minutes=2)) / rows
    began = time.perf_counter()
    batch = 10_000
    for first in range(0, rows, batch):
        last = first + batch >= rows
        client.ingest(SPEC["id"], readings(start, step, first, min(batch, rows - first)), secret=secret,
                      wait="stored" if last else "durable", wait_timeout=600)
    return time.perf_counter() - began


def widget_queries(days: int) -> dict[str, dict[str, Any]]:
    """The query each widget makes over the range (as the page asks: an average with its count)."""
    now = dt.datetime.now(dt.timezone.utc)
    span = {"start": now - dt.timedelta(days=days), "end": now}
    bucket = "1h" if days <= 7 else "6h"
    return {
        "stat count": {**span, "agg": "count"},
        "stat avg": {**span, "agg": ["avg:temp_c", "count:temp_c"]},
        f"line avg by device per {bucket}": {**span, "agg": ["avg:temp_c", "count:temp_c"], "bucket": bucket,
                                             "by": "device"},
        f"line count per {bucket}": {**span, "agg": "count", "bucket": bucket},
        "bar avg by device": {**span, "agg": ["avg:humidity", "count:humidity"], "by": "device"},
        "table newest 20": {**span, "fields": ["device", "temp_c", "humidity"], "order": "desc", "limit": 20},
    }


def api_baseline(client: Any, days: int, each: dict[str, list[float]]) -> float:
    """The six widgets' queries from Python, one after another (seconds); each one's time is
    added to `each`."""
    total = 0.0
    for name, options in widget_queries(days).items():
        began = time.perf_counter()
        client.query(SPEC["id"], **options)
        took = time.perf_counter() - began
        each.setdefault(name, []).append(took)
        total += took
    return total


def signed_in_page(browser: Any, url: str, token: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(f"localStorage.setItem('dash.token', {token!r})")
    return context, context.new_page()


# The page's requests to the API until every widget has drawn: (what, start s, end s) each.
REQUESTS_JS = """() => performance.getEntriesByType('resource').filter((e) => e.name.includes('/v1/')).map((e) => {
  const u = new URL(e.name); const q = u.searchParams;
  const what = u.pathname.replace(/^.*\\/v1\\//, '') + (q.get('agg') ? ` agg=${q.get('agg')}` : '')
    + (q.get('bucket') ? ` bucket=${q.get('bucket')}` : '') + (q.get('by') ? ` by=${q.get('by')}` : '')
    + (q.get('order') ? ` order=${q.get('order')}` : '') + (q.get('limit') ? ` limit=${q.get('limit')}` : '');
  return [what, e.startTime / 1000, e.responseEnd / 1000];
})"""


def time_to_draw(browser: Any, url: str, token: str, days: int,
                 requests: dict[str, list[tuple[float, float]]] | None = None) -> float:
    """Seconds from navigation to every widget drawn; each API request's (start, end) is
    added to `requests` by what it asked."""
    context, page = signed_in_page(browser, url, token)
    try:
        page.goto(f"{url}/dashboards/bench?range={days}d")
        page.wait_for_function("() => performance.getEntriesByName('dash:drawn').length > 0", timeout=120_000)
        drawn = page.evaluate("() => performance.getEntriesByName('dash:drawn')[0].startTime") / 1000
        if requests is not None:
            for what, start, end in page.evaluate(REQUESTS_JS):
                if start <= drawn:
                    requests.setdefault(what, []).append((start, end))
        return drawn
    finally:
        context.close()


def busy_share(browser: Any, url: str, token: str, seconds: float, stream: Any | None) -> float:
    """Main-thread busy share of wall time over `seconds` (CDP TaskDuration)."""
    context, page = signed_in_page(browser, url, token)
    try:
        page.goto(f"{url}/dashboards/bench?range=15m")
        page.wait_for_function("() => performance.getEntriesByName('dash:drawn').length > 0", timeout=120_000)
        page.wait_for_selector(".live-state[data-state=live]", timeout=30_000)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")

        def task_s() -> float:
            metrics = cdp.send("Performance.getMetrics")["metrics"]
            return next(m["value"] for m in metrics if m["name"] == "TaskDuration")

        stop = threading.Event()
        writer = threading.Thread(target=stream, args=(stop,)) if stream else None
        before, began = task_s(), time.perf_counter()
        if writer:
            writer.start()
        time.sleep(seconds)
        busy, wall = task_s() - before, time.perf_counter() - began
        stop.set()
        if writer:
            writer.join()
        return busy / wall
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--settle", type=float, default=150)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from dash_ray.auth.tokens import hash_token
    from dash_ray.client import Client
    from dash_ray.deploy.localray import free_port, stop_instance
    from dash_ray.settings import Settings
    from serve_app.startup import down, up

    home = Path(tempfile.mkdtemp(prefix="dash-bench-dashboard-"))
    token = "dash_admin_bench"
    settings = Settings.from_env(env={}, home=str(home / "home"), port=free_port(), admin_token_hash=hash_token(token))
    started = up(settings)
    client = Client(started.url, token=token)
    try:
        secret = client.deploy(SPEC).ingest_secret
        deadline = time.monotonic() + 60
        while client.get(SPEC["id"]).status != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        seeding_s = seed(client, secret, args.rows, args.days)
        client.put_dashboard({"id": "bench", "title": "Bench",
                              "widgets": [{**w, "pipeline": SPEC["id"], "window": f"{args.days}d"} for w in WIDGETS]})
        time.sleep(args.settle)
        each: dict[str, list[float]] = {}
        baseline = statistics.median(api_baseline(client, args.days, each) for _ in range(args.loads))

        def stream(stop: threading.Event) -> None:
            n, every = max(1, args.rate // 10), 0.1
            tick = time.perf_counter()
            while not stop.is_set():
                now = dt.datetime.now(dt.timezone.utc)
                client.ingest(SPEC["id"], readings(now, dt.timedelta(microseconds=1), 0, n), secret=secret)
                tick += every
                time.sleep(max(0.0, tick - time.perf_counter()))

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                time_to_draw(browser, started.url, token, args.days)  # warm: caches, rollups read once
                requests: dict[str, list[tuple[float, float]]] = {}
                draws = [time_to_draw(browser, started.url, token, args.days, requests) for _ in range(args.loads)]
                idle = busy_share(browser, started.url, token, args.seconds, None)
                streaming = busy_share(browser, started.url, token, args.seconds, stream)
            finally:
                browser.close()
    finally:
        client.close()
        down(settings)
        if started.local is not None:
            stop_instance(started.local)
        shutil.rmtree(home, ignore_errors=True)

    draw = statistics.median(draws)
    print(f"\n{args.rows:,} rows over {args.days} days (seeded in {seeding_s:.0f} s, "
          f"{args.rows / seeding_s:,.0f} rows/s), measured {args.settle:.0f} s later; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| measure | value | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    print(f"| 6 widgets drawn (median of {args.loads} loads; best {min(draws):.2f} s) | {draw:.2f} s "
          f"| {baseline:.2f} s (the 6 queries from Python) | {draw / baseline:.1f}x | < 1.5 s |")
    print(f"| main thread busy, {args.rate:,} records/s streaming | {streaming:.1%} | {idle:.1%} (idle page) "
          f"| {streaming / idle if idle else float('nan'):.1f}x | < 50% |")
    print("\n| widget query (from Python) | median s |\n|---|---|")
    for name, times in each.items():
        print(f"| {name} | {statistics.median(times):.3f} |")
    print("\n| page request before the draw (in order) | median start s | median end s | median took s |")
    print("|---|---|---|---|")
    for what, spans in sorted(requests.items(), key=lambda kv: statistics.median(s for s, _ in kv[1])):
        print(f"| {what} | {statistics.median(s for s, _ in spans):.3f} | {statistics.median(e for _, e in spans):.3f} "
              f"| {statistics.median(e - s for s, e in spans):.3f} |")


if __name__ == "__main__":
    main()
