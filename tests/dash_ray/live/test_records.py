import datetime as dt

import pyarrow as pa

from dash_ray.live.records import rows_to_records


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
