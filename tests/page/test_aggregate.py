"""The page's aggregates (serve_app/static/js/aggregate.js: what stat, bar and line widgets
draw) agree with the query API's, DuckDB over the lake (dash_ray/query/), on the same rows:
every function, buckets, by-groups, nulls and no rows at all.

The scripts run in the Debian Chromium as the page loads them (ES modules over HTTP from the
static folder). The records they aggregate are what the page's feed holds for those rows: the
query API's raw rows, through feed.js (`recordOf`, `PipelineFeed.add`). The values the page
draws from an answer (a bar's key, a chart's number) are made by the page's own functions
(`groupName`, `numberOr`), so only the aggregation is compared."""

from __future__ import annotations

import datetime as dt
import math
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_ray.lake import Lake
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import MAX_LIMIT, parse_query
from dash_ray.silver.lake import LakeSilver
from serve_app.page import STATIC_DIR
from tests.dash_ray.query.conftest import SCHEMA, to_table
from tests.dash_ray.query.test_contract import sample_rows

BASE = 1_777_636_800_000_000  # 2026-05-01T12:00:00Z
# What a dashboard may ask (dash_ray/dashboards.py) that the query API answers too: avg, sum,
# min and max of numbers; count and first/last of any field the query API orders.
AGGS = ["count", "count:temp", "count:device", "count:tags", "count:ok",
        "avg:temp", "sum:temp", "min:temp", "max:temp", "avg:n", "sum:n", "min:n", "max:n",
        "first:temp", "last:temp", "first:n", "last:n", "first:device", "last:device",
        "first:ok", "last:ok", "first:seen", "last:seen"]
BYS = ["device", "ok", "n"]
BUCKETS_S = [1, 7, 60, 420, 3600, 86_400]


class _Static(SimpleHTTPRequestHandler):
    """The static folder as the page gets it, and an empty page at `/` to import it into."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(STATIC_DIR), **kwargs)

    def do_GET(self) -> None:
        if self.path != "/":
            super().do_GET()
            return
        body = b"<!doctype html><meta charset=utf-8><title>aggregate.js</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Page:
    """aggregate.js in a tab: the page's aggregates over a set of rows, in one call."""

    SCRIPT = """async ({rows, aggs, bys, buckets}) => {
        const A = await import("/js/aggregate.js");
        const F = await import("/js/feed.js");
        const feed = new F.PipelineFeed({id: "p"}, {maxRecords: 1e6});
        feed.add(rows.map(F.recordOf));
        const records = feed.records;
        const out = {stat: {}, bars: {}, lines: {}};
        for (const agg of aggs) {
            out.stat[agg] = A.aggregate(agg, records);
            for (const by of bys) {
                const groups = [...A.groupBy(records, by).entries()];
                out.bars[`${agg} ${by}`] = groups.map(([key, rs]) => [key, A.aggregate(agg, rs)]);
            }
            for (const bucket of buckets) {
                for (const by of [null, ...bys]) {
                    out.lines[`${agg} ${bucket} ${by ?? ""}`] = A.bucketSeries(records, agg, bucket, by);
                }
            }
        }
        return out;
    }"""

    def __init__(self, page: Any) -> None:
        self.page = page

    def aggregates(self, rows: list[dict[str, Any]], aggs: list[str], bys: list[str],
                   buckets: list[int]) -> dict[str, Any]:
        shown: dict[str, Any] = self.page.evaluate(self.SCRIPT, {"rows": rows, "aggs": aggs, "bys": bys,
                                                                 "buckets": buckets})
        return shown

    def drawn(self, values: list[Any]) -> tuple[list[str], list[float | None]]:
        """Each value as the page names a group by it, and as the number it charts."""
        drawn: tuple[list[str], list[float | None]] = self.page.evaluate("""async (values) => {
            const { numberOr } = await import("/js/charts.js");
            const { groupName } = await import("/js/aggregate.js");
            return [values.map(groupName), values.map(numberOr)];
        }""", values)
        return drawn


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Page]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Static)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    context = browser.new_context()
    try:
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        yield Page(tab)
        assert errors == [], f"JavaScript errors on the page: {errors}"
    finally:
        context.close()
        server.shutdown()
        server.server_close()
        thread.join()


class Silver:
    """One pipeline's silver rows in the lake, and the query API's engine over them."""

    def __init__(self, lake: Lake) -> None:
        self.pipeline_id = f"agg-{uuid.uuid4().hex[:8]}"
        self.store = LakeSilver(lake, self.pipeline_id)
        self.engine = DuckDBEngine(lake, self.pipeline_id)

    def hold(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store exactly `rows` (seq order); the raw rows the query API gives the page."""
        self.store.discard_after(0)
        if rows:
            self.store.write(to_table(rows), first_seq=rows[0]["seq"], last_seq=rows[-1]["seq"])
        return self.answer({"limit": str(MAX_LIMIT)})

    def answer(self, params: dict[str, str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.engine.run(parse_query(params, SCHEMA))["rows"]
        return rows


@pytest.fixture(scope="module")
def silver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Silver]:
    made = Silver(Lake.from_url(str(tmp_path_factory.mktemp("aggregate") / "lake")))
    try:
        yield made
    finally:
        made.engine.close()


# -- comparing --------------------------------------------------------------------------------


def _agree(shown: Any, expected: Any, where: str) -> None:
    if isinstance(shown, bool) or isinstance(expected, bool) or shown is None or expected is None:
        assert shown is expected, f"{where}: the page shows {shown!r}, the query API answers {expected!r}"
    elif isinstance(shown, (int, float)) and isinstance(expected, (int, float)):
        assert math.isclose(shown, expected, rel_tol=1e-9, abs_tol=1e-9), \
            f"{where}: the page shows {shown!r}, the query API answers {expected!r}"
    else:
        assert shown == expected, f"{where}: the page shows {shown!r}, the query API answers {expected!r}"


def _name(agg: str) -> str:
    return agg.replace(":", "_")


def _epoch_s(iso: str) -> float:
    return (dt.datetime.fromisoformat(iso) - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")  # JavaScript's string order: UTF-16 code units


def check(page: Page, silver: Silver, rows: list[dict[str, Any]], aggs: list[str], bys: list[str],
          buckets: list[int]) -> None:
    """The page's stat, bar and line aggregates over `rows` are the query API's answers."""
    shown = page.aggregates(silver.hold(rows), aggs, bys, buckets)
    for agg in aggs:
        fn, name = agg.partition(":")[0], _name(agg)
        # A stat: one value over every row. No rows: the query API lists none; the page shows
        # what they would say, a count of 0 and no value.
        [answer] = silver.answer({"agg": agg}) or [{name: 0 if fn == "count" else None}]
        _agree(shown["stat"][agg], answer[name], f"stat {agg}")
        for by in bys:
            # A bar per value of `by`, keyed as the page names it.
            answered = silver.answer({"agg": agg, "by": by})
            keys, _ = page.drawn([r[by] for r in answered])
            bars = dict(shown["bars"][f"{agg} {by}"])
            assert sorted(bars) == sorted(keys), f"bars {agg} by {by}: the page has {sorted(bars)}, the API {keys}"
            for key, row in zip(keys, answered, strict=True):
                _agree(bars[key], row[name], f"bar {key!r} of {agg} by {by}")
        for bucket in buckets:
            for line_by in [None, *bys]:
                _check_line(page, silver, shown["lines"][f"{agg} {bucket} {line_by or ''}"], agg, bucket, line_by)


def _check_line(page: Page, silver: Silver, line: dict[str, Any], agg: str, bucket: int, by: str | None) -> None:
    where = f"line {agg} per {bucket} s" + (f" by {by}" if by else "")
    params = {"agg": agg, "bucket": f"{bucket}s", **({"by": by} if by else {})}
    answered = silver.answer(params)
    xs = [_epoch_s(r["bucket"]) for r in answered]
    keys = page.drawn([r[by] for r in answered])[0] if by else []
    values = page.drawn([r[_name(agg)] for r in answered])[1]
    if line["xs"] != sorted(set(xs)):
        extra, missing = sorted(set(line["xs"]) - set(xs)), sorted(set(xs) - set(line["xs"]))
        raise AssertionError(f"{where}: the page's buckets (epoch s) differ: extra {extra[:5]}, missing {missing[:5]}")
    if by is None:
        assert [s["label"] for s in line["series"]] == [agg]
        _agree_all(line["series"][0]["values"], values, where)
        return
    # One series per value of `by` (the first 12 in the page's order), null where a bucket
    # holds no row of it.
    expected: dict[str, list[float | None]] = {}
    for key in sorted(set(keys), key=_utf16)[:12]:
        expected[key] = [None] * len(line["xs"])
    for x, key, value in zip(xs, keys, values, strict=True):
        if key in expected:
            expected[key][line["xs"].index(x)] = value
    assert [s["label"] for s in line["series"]] == list(expected), f"{where}: series"
    for series in line["series"]:
        _agree_all(series["values"], expected[series["label"]], f"{where}, series {series['label']!r}")


def _agree_all(shown: list[Any], expected: list[Any], where: str) -> None:
    assert len(shown) == len(expected), f"{where}: {len(shown)} points != {len(expected)}"
    for i, (a, b) in enumerate(zip(shown, expected, strict=True)):
        _agree(a, b, f"{where} [{i}]")


# -- the cases --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contract_rows() -> list[dict[str, Any]]:
    """The query contract's rows: three days and some of 1969, ties in time, nulls in every
    field, mixed-case and non-ASCII strings, times out of seq order."""
    return sample_rows()


@pytest.mark.parametrize("agg", AGGS)
def test_every_aggregate_over_the_contract_rows(page: Page, silver: Silver, contract_rows: list[dict[str, Any]],
                                                 agg: str) -> None:
    check(page, silver, contract_rows, [agg], BYS, BUCKETS_S)


def test_no_rows(page: Page, silver: Silver) -> None:
    check(page, silver, [], AGGS, BYS, BUCKETS_S)


def test_only_nulls(page: Page, silver: Silver) -> None:
    rows = [{"seq": seq, "time": BASE + seq * 1_000_000} for seq in range(1, 6)]
    check(page, silver, rows, AGGS, BYS, BUCKETS_S)


# Times at whole milliseconds (the precision of a browser's Date), few of them so ties are
# common, some before 1970; strings the page's sorting and naming could trip on.
_times = st.one_of(st.integers(-3, 40).map(lambda k: BASE + k * 450_000_000),
                   st.integers(-86_400_000, 86_400_000).map(lambda ms: ms * 1000),
                   st.integers(-7_200_000, 7_200_000).map(lambda ms: BASE + ms * 1000))
_rows = st.lists(st.fixed_dictionaries({
    "time": _times,
    "device": st.none() | st.sampled_from(["a", "B", "b", "äb", "", "10", "9", "x y", "😀", "∅", '"∅"']),
    "temp": st.none() | st.floats(-1e6, 1e6, allow_nan=False, width=64),
    "n": st.none() | st.integers(-(2**40), 2**40),
    "ok": st.none() | st.booleans(),
    "seen": st.none() | st.integers(BASE - 10**12, BASE + 10**12),
    "tags": st.none() | st.fixed_dictionaries({"k": st.integers(0, 3)}),
}), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_rows, aggs=st.lists(st.sampled_from(AGGS), min_size=1, max_size=3, unique=True),
       by=st.sampled_from(BYS), bucket=st.sampled_from(BUCKETS_S))
def test_random_rows(page: Page, silver: Silver, data: list[dict[str, Any]], aggs: list[str], by: str,
                     bucket: int) -> None:
    rows = [{"seq": i + 1, **row} for i, row in enumerate(data)]
    check(page, silver, rows, aggs, [by], [bucket])


# -- where the page and the query API parted ways (both fixed; the cases stay) -------------


def test_first_and_last_of_rows_within_one_millisecond(page: Page, silver: Silver) -> None:
    """The page orders by the microsecond, as the query API does (it ordered by Date.parse's
    millisecond, then seq, and so picked the other row)."""
    rows = [{"seq": 1, "time": BASE + 700, "n": 1}, {"seq": 2, "time": BASE + 300, "n": 2},
            {"seq": 3, "time": BASE - 999_700, "n": 3}, {"seq": 4, "time": BASE - 999_900, "n": 4}]
    check(page, silver, rows, ["first:n", "last:n"], [], [1])


def test_a_string_that_reads_like_the_null_group(page: Page, silver: Silver) -> None:
    """A string "∅" (or one starting with a quote) is a group of its own, apart from the null
    group (both were named "∅" and counted as one)."""
    rows: list[dict[str, Any]] = [{"seq": 1, "time": BASE, "device": "∅", "n": 1},
                                  {"seq": 2, "time": BASE, "device": None, "n": 2},
                                  {"seq": 3, "time": BASE, "device": '"∅"', "n": 4},
                                  {"seq": 4, "time": BASE, "device": '"', "n": 8}]
    check(page, silver, rows, ["sum:n"], ["device"], [60])
