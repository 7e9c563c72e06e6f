import datetime as dt

import pyarrow as pa

from dash_ray.pipeline.hot import HotBuffer, rows_to_records


def records(seqs):
    return [{"seq": s, "time": None, "data": {}} for s in seqs]


def test_keeps_only_the_newest():
    hot = HotBuffer(3)
    hot.extend(records(range(1, 6)))
    assert [r["seq"] for r in hot.since()] == [3, 4, 5] and hot.last_seq == 5
    hot.extend(records(range(6, 20)))
    assert [r["seq"] for r in hot.since()] == [17, 18, 19]


def test_since_after_and_limit():
    hot = HotBuffer(100)
    hot.extend(records(range(1, 11)))
    assert [r["seq"] for r in hot.since(after=7)] == [8, 9, 10]
    assert [r["seq"] for r in hot.since(after=2, limit=3)] == [3, 4, 5]
    assert [r["seq"] for r in hot.since(limit=2)] == [9, 10]
    assert hot.since(after=10) == [] and hot.since(limit=0) == []
    assert len(hot.since(limit=500)) == 10


def test_rows_to_records_formats_time_and_json():
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    rows = pa.table({
        "seq": pa.array([1], pa.int64()),
        "time": pa.array([t], pa.timestamp("us", tz="UTC")),
        "seen": pa.array([t], pa.timestamp("us", tz="UTC")),
        "tags": pa.array(['["a","b"]']),
        "temp": pa.array([None], pa.float64()),
    })
    (record,) = rows_to_records(rows, frozenset({"tags"}))
    assert record == {"seq": 1, "time": "2026-01-02T03:04:05Z",
                      "data": {"seen": "2026-01-02T03:04:05Z", "tags": ["a", "b"], "temp": None}}
