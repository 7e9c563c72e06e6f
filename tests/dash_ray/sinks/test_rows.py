"""The records a sink keeps, made a column at a time (`dash_ray.sinks.rows`): the same records
as the live feed's (`dash_ray.live.records`), built row by row from Python datetimes, and the
same groups as `grouping.group_key`."""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow as pa

from dash_ray.live.records import rows_to_records
from dash_ray.sinks.grouping import group_key
from dash_ray.sinks.rows import rows_as_json
from dash_ray.spec import parse_spec

UTC = dt.timezone.utc


def _rows() -> pa.Table:
    times = [dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC), None, dt.datetime(1999, 1, 2, 3, 4, 5, 123, tzinfo=UTC),
             dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    stamp = pa.timestamp("us", tz="UTC")
    table = pa.table({
        "seq": pa.array([1, 2, 3, 4], pa.int64()),
        "time": pa.array(times, stamp),
        "seen": pa.array(list(reversed(times)), stamp),
        "payload": pa.array(['{"a": [1, 2]}', '"x"', None, '{"a": [1, 2]}'], pa.string()),
        "device": pa.array(["d1", None, 'é"q\n', "d1"], pa.string()),
        "temp_c": pa.array([1.5, float("nan"), None, -0.0], pa.float64()),
        "count": pa.array([1, None, -(2**62), 0], pa.int64()),
        "ok": pa.array([True, None, False, True], pa.bool_()),
    })
    # Several chunks, as a take's rows are (one per mapped batch).
    return pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])


def test_each_row_is_the_live_feeds_record_with_its_group() -> None:
    rows = _rows()
    assert rows.column("time").num_chunks == 3
    spec = parse_spec({"id": "p", "sinks": [{"name": "ops", "kind": "slack", "url": "http://x",
                                             "group_by": ["device", "payload", "ok"]}]}).sinks[0]
    kept = rows_as_json(rows, frozenset({"payload"}), spec.group_by)
    expected = rows_to_records(rows, frozenset({"payload"}))
    assert [seq for seq, _, _ in kept] == [1, 2, 3, 4]
    assert [orjson.loads(blob) for _, _, blob in kept] == orjson.loads(orjson.dumps(expected))
    assert orjson.loads(kept[0][2])["time"] == "2024-05-01T12:00:00Z"  # no fraction when there is none
    assert orjson.loads(kept[2][2])["time"] == "1999-01-02T03:04:05.000123Z"
    assert b'"payload":{"a": [1, 2]}' in kept[0][2]  # a json field embedded as it came
    raw = rows.to_pylist()
    assert [grp for _, grp, _ in kept] == [group_key(spec, row) for row in raw]
    assert kept[0][1] == kept[3][1] != kept[1][1]


def test_a_webhooks_rows_share_one_group_and_rows_of_no_fields_have_empty_data() -> None:
    rows = _rows().select(["seq", "time"])
    kept = rows_as_json(rows, frozenset())
    assert [(seq, grp) for seq, grp, _ in kept] == [(1, ""), (2, ""), (3, ""), (4, "")]
    assert orjson.loads(kept[1][2]) == {"seq": 2, "time": None, "data": {}}
