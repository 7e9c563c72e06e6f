import datetime as dt
import gc
import threading

import orjson
import pyarrow as pa
import pytest

from dash_ray.mapping import DEAD_LETTER_SCHEMA, MappingResult, compile_mapping
from dash_ray.sources.demo import DEMO_SPEC
from dash_ray.spec import load_spec

UTC = dt.timezone.utc
TS = pa.timestamp("us", tz="UTC")

SENSORS = {
    "fields": {
        "time": {"path": "$.ts", "type": "timestamp"},
        "device": {"path": "$.device.id", "type": "string", "required": True},
        "temp_c": {"path": "$.readings[0].value", "type": "double", "default": None},
        "tags": {"path": "$.tags[*].name", "type": "json"},
        "status": {"path": "$.status", "type": "string"},
        "temp_f": {"expr": "temp_c * 9 / 5 + 32", "type": "double"},
    },
    "filter": "device <> 'test-rig'",
    "validate": [{"field": "temp_c", "min": -90, "max": 60},
                 {"field": "device", "regex": "^[a-z]+-[0-9]+$"},
                 {"field": "status", "enum": ["ok", "warn", "fail"]}],
}


def reading(device="sensor-1", temp=21.5, ts="2024-05-01T12:00:00Z", status="ok", **more):
    return {"ts": ts, "device": {"id": device}, "readings": [{"value": temp}],
            "tags": [{"name": "a"}, {"name": "b"}], "status": status, **more}


def test_schema_orders_fixed_columns_then_fields(mp):
    compiled = mp.compile(SENSORS)
    assert compiled.schema == pa.schema([
        ("seq", pa.int64()), ("time", TS), ("device", pa.string()), ("temp_c", pa.float64()),
        ("tags", pa.string()), ("status", pa.string()), ("temp_f", pa.float64())])
    keep = mp.compile({**SENSORS, "keep_extra": True})
    assert keep.schema.names[-1] == "extra"
    every = mp.compile({"fields": {k: {"path": f"$.{k}", "type": t} for k, t in (
        ("s", "string"), ("i", "int"), ("d", "double"), ("b", "bool"), ("t", "timestamp"), ("j", "json"))}})
    assert [f.type for f in every.schema][2:] == [pa.string(), pa.int64(), pa.float64(), pa.bool_(), TS, pa.string()]


def test_maps_the_api_example(mp):
    result = mp.run(SENSORS, [reading(), reading(device="sensor-2", temp=None, status="warn")])
    assert result.filtered == 0 and result.dead.num_rows == 0
    assert result.rows.to_pylist() == [
        {"seq": 1, "time": dt.datetime(2024, 5, 1, 12, tzinfo=UTC), "device": "sensor-1", "temp_c": 21.5,
         "tags": '["a","b"]', "status": "ok", "temp_f": 70.7},
        {"seq": 2, "time": dt.datetime(2024, 5, 1, 12, tzinfo=UTC), "device": "sensor-2", "temp_c": None,
         "tags": '["a","b"]', "status": "warn", "temp_f": None},
    ]


def test_time_falls_back_to_received_at(mp):
    result = mp.run(SENSORS, [reading(ts=None), {**reading(), "ts": None}])
    assert result.rows.column("time").to_pylist() == [mp.RECEIVED, mp.RECEIVED]
    plain = mp.run({"fields": {"a": {"path": "$.a"}}}, [{"a": "x"}])
    assert plain.rows.column("time").to_pylist() == [mp.RECEIVED]


def test_expressions_filter_and_rules_see_the_final_time(mp):
    spec = {"fields": {"time": {"path": "$.ts", "type": "timestamp"},
                       "year": {"expr": "date_trunc('year', time)", "type": "timestamp"}},
            "filter": "time > '2000-01-01'", "validate": [{"field": "time", "min": 1_600_000_000}]}
    result = mp.run(spec, [{}, {"ts": "1999-01-01T00:00:00Z"}, {"ts": "2019-01-01T00:00:00Z"}])
    assert result.rows.column("year").to_pylist() == [dt.datetime(2023, 1, 1, tzinfo=UTC)]
    assert result.filtered == 1
    assert result.dead.to_pylist()[0]["reason"] == '"2019-01-01T00:00:00Z" is below the minimum 2020-09-13T12:26:40Z'


def test_pass_through_keeps_the_whole_record(mp):
    raws = ['{"a": 1, "b": {"c": [1, 2]}}', '{}', '{"n": 123456789012345678901234567890}']
    result = mp.run({}, raws)
    assert result.rows.schema.names == ["seq", "time", "extra"]
    assert result.rows.column("extra").to_pylist() == raws  # exactly as received
    result = mp.run({"filter": "received_at IS NULL"}, raws)
    assert result.filtered == 3


def test_keep_extra(mp):
    spec = {"fields": {"a": {"path": "$.a.x", "type": "int"}, "b": {"path": "$['b c']", "type": "string"},
                       "e": {"expr": "a + 1", "type": "int"}}, "keep_extra": True}
    result = mp.run(spec, [{"a": {"x": 1, "y": 2}, "b c": "q", "z": [1], "ü": None}, {"a": {"x": 1}}, {}])
    assert result.rows.column("extra").to_pylist() == ['{"z":[1],"ü":null}', None, None]
    reads_all = {"fields": {"all": {"path": "$", "type": "json"}}, "keep_extra": True}
    assert mp.run(reads_all, [{"q": 1}]).rows.column("extra").to_pylist() == [None]
    index_only = {"fields": {"first": {"path": "$[0]", "type": "json"}}, "keep_extra": True}
    assert mp.run(index_only, [{"q": 1}]).rows.column("extra").to_pylist() == ['{"q":1}']


@pytest.mark.parametrize(("raw", "rule", "reason"), [
    ("nope", "json", "record is not valid JSON: "),
    ('{"a": 1', "json", "record is not valid JSON: "),
    ('{"a": NaN}', "json", "record is not valid JSON: "),
    ('{"a": 1,}', "json", "record is not valid JSON: "),
    (r'{"a": "\ud800"}', "json", "record is not valid JSON: "),
    ("", "json", "record is not valid JSON: "),
    (None, "json", "record is empty (null raw)"),
    ("[1, 2]", "object", "record is an array, not a JSON object"),
    ('"text"', "object", "record is a string, not a JSON object"),
    ("42", "object", "record is a number, not a JSON object"),
    ("true", "object", "record is a boolean, not a JSON object"),
    ("null", "object", "record is null, not a JSON object"),
])
def test_records_that_are_not_objects_are_dead_lettered(mp, raw, rule, reason):
    for spec in (SENSORS, {}):
        result = mp.run(spec, [reading(), raw, reading(device="sensor-3")])
        assert result.rows.column("seq").to_pylist() == [1, 3]
        (dead,) = result.dead.to_pylist()
        assert (dead["seq"], dead["rule"], dead["field"], dead["value"]) == (2, rule, None, None)
        assert dead["raw"] == raw and dead["received_at"] == mp.RECEIVED
        assert dead["reason"].startswith(reason)


def test_first_failure_wins_in_the_documented_order(mp):
    records = [
        reading(device=None, temp="hot"),              # required (device) before a later field's type
        reading(temp="hot"),                           # type on temp_c
        reading(device="test-rig", temp="hot"),        # a cast failure beats the filter
        reading(device="test-rig", temp=99),           # the filter beats the rules
        reading(temp=99, status="bad"),                # max (first rule) before enum (third rule)
        reading(device="Sensor_1", status="bad"),      # regex (second rule) before enum
        reading(status="bad"),                         # enum
        reading(temp=-100),                            # min
        reading(),                                     # fine
    ]
    result = mp.run(SENSORS, records)
    dead = result.dead.to_pylist()
    assert [(d["seq"], d["rule"], d["field"]) for d in dead] == [
        (1, "required", "device"), (2, "type", "temp_c"), (3, "type", "temp_c"), (5, "max", "temp_c"),
        (6, "regex", "device"), (7, "enum", "status"), (8, "min", "temp_c")]
    assert result.filtered == 1 and result.rows.column("seq").to_pylist() == [9]
    reasons = {d["seq"]: (d["value"], d["reason"]) for d in dead}
    assert reasons[5] == ("99.0", "99.0 is above the maximum 60")
    assert reasons[8] == ("-100.0", "-100.0 is below the minimum -90")
    assert reasons[6] == ('"Sensor_1"', '"Sensor_1" does not match "^[a-z]+-[0-9]+$"')
    assert reasons[7] == ('"bad"', '"bad" is not one of ["ok","warn","fail"]')
    assert reasons[2] == ('"hot"', 'cannot cast "hot" to double')


def test_a_null_fails_only_required(mp):
    spec = {"fields": {"n": {"path": "$.n", "type": "int"}, "s": {"path": "$.s", "type": "string"}},
            "validate": [{"field": "n", "min": 0, "max": 1, "enum": [5]}, {"field": "s", "regex": "^x$"},
                         {"field": "s", "required": True}]}
    result = mp.run(spec, [{"s": "x"}, {"n": None, "s": None}])
    assert result.rows.column("seq").to_pylist() == [1]
    (dead,) = result.dead.to_pylist()
    assert (dead["rule"], dead["field"], dead["value"], dead["reason"]) == ("required", "s", None, 'field "s" is null')


def test_rules_on_every_kind_of_field(mp):
    spec = {"fields": {"i": {"path": "$.i", "type": "int"}, "t": {"path": "$.t", "type": "timestamp"},
                       "j": {"path": "$.j", "type": "json"}, "b": {"path": "$.b", "type": "bool"}},
            "validate": [{"field": "i", "min": 1.5, "enum": [2, "3"]}, {"field": "t", "max": 0},
                         {"field": "j", "enum": [{"a": 1}, "x"]}, {"field": "b", "enum": [True]}]}
    records = [{"i": 2, "t": -5, "j": {"a": 1}, "b": True}, {"i": 1}, {"i": 4}, {"t": 10},
               {"j": {"a": 2}}, {"j": "x"}, {"b": False}]
    result = mp.run(spec, records)
    assert result.rows.column("seq").to_pylist() == [1, 6]
    assert [(d["rule"], d["field"], d["value"]) for d in result.dead.to_pylist()] == [
        ("min", "i", "1"), ("enum", "i", "4"), ("max", "t", '"1970-01-01T00:00:10Z"'), ("enum", "j", '{"a":2}'),
        ("enum", "b", "false")]


def test_input_order_and_invariant(mp):
    records = [reading(device=f"sensor-{i}", temp=i % 50) for i in range(100)]
    records[10] = "bad"
    records[20] = reading(device="test-rig")
    records[30] = reading(temp=100)
    result = mp.run(SENSORS, records)
    seqs = result.rows.column("seq").to_pylist()
    assert seqs == sorted(seqs) and len(seqs) == 97
    assert result.dead.column("seq").to_pylist() == [11, 31]
    assert set(seqs) | {11, 21, 31} == set(range(1, 101))


def test_empty_and_chunked_batches(mp):
    compiled = mp.compile(SENSORS)
    empty = compiled.apply(mp.batch([]))
    assert (empty.rows.num_rows, empty.dead.num_rows, empty.filtered) == (0, 0, 0)
    assert empty.rows.schema == compiled.schema and empty.dead.schema == DEAD_LETTER_SCHEMA
    batch = mp.batch([reading(), "bad", reading()])
    chunked = pa.concat_tables([batch.slice(0, 1), batch.slice(1)])
    assert compiled.apply(chunked) == compiled.apply(batch)
    assert compiled.apply(batch).dead.schema == DEAD_LETTER_SCHEMA


def test_a_batch_without_the_input_columns_is_a_programming_error(mp):
    with pytest.raises(ValueError, match="columns"):
        mp.compile(SENSORS).apply(pa.table({"raw": ["{}"]}))


def test_concurrent_calls_are_safe(mp):
    compiled = mp.compile(SENSORS)
    batch = mp.batch([reading(device=f"sensor-{i}", temp=i % 80) for i in range(2000)])
    expected = compiled.apply(batch)
    results: list[MappingResult] = []

    def work() -> None:
        for _ in range(5):
            results.append(compiled.apply(batch))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(r == expected for r in results)
    assert gc.isenabled()


def test_shipped_specs_compile_and_map(mp):
    demo = compile_mapping(load_spec(orjson.dumps(DEMO_SPEC).decode()).mapping)
    result = demo.apply(mp.batch([{"ts": 1714564800000, "device": {"id": "sensor-1", "site": "lab"},
                                   "readings": {"temp": 31.0, "humidity": 40}}]))
    assert result.rows.to_pylist()[0]["status"] == "hot"
    for name in ("weather", "github"):
        compile_mapping(load_spec(f"configs/{name}.yaml").mapping)


def test_an_expression_can_use_fields_declared_before_it_in_any_order(mp):
    spec = {"fields": {"a": {"path": "$.a", "type": "int"}, "b": {"expr": "a * 2", "type": "int"},
                       "c": {"path": "$.c", "type": "int"}, "d": {"expr": "b + c", "type": "int"}}}
    assert mp.run(spec, [{"a": 1, "c": 10}]).rows.column("d").to_pylist() == [12]


def test_expr_default_applies_to_null_results(mp):
    spec = {"fields": {"a": {"path": "$.a", "type": "double"},
                       "b": {"expr": "a * 2", "type": "double", "default": -1}}}
    assert mp.run(spec, [{"a": 1}, {}]).rows.column("b").to_pylist() == [2.0, -1.0]


def test_large_batches_map_in_pieces_with_the_same_result(mp):
    compiled = mp.compile({**SENSORS, "keep_extra": True})
    records = [reading(device=f"sensor-{i % 7}", temp=(i * 7) % 130 - 60, extra=i) for i in range(5000)]
    for i in range(0, 5000, 97):
        records[i] = "bad" if i % 2 else reading(device="test-rig")
    batch = mp.batch(records)
    whole = compiled.apply(batch)
    pieces = [compiled.apply(batch.slice(at, 1000)) for at in range(0, 5000, 1000)]
    assert whole.rows == pa.concat_tables([p.rows for p in pieces])
    assert whole.dead == pa.concat_tables([p.dead for p in pieces])
    assert whole.filtered == sum(p.filtered for p in pieces) > 0
    assert whole.rows.num_rows + whole.dead.num_rows + whole.filtered == 5000


def test_exported_names():
    from dash_ray import mapping

    assert mapping.__all__ == ["DEAD_LETTER_SCHEMA", "CompiledMapping", "MappingResult", "compile_mapping"]
    assert all(hasattr(mapping, name) for name in mapping.__all__)


def test_the_garbage_collector_is_restored(mp):
    compiled = mp.compile(SENSORS)
    batch = mp.batch([reading(), "bad"])
    assert gc.isenabled()
    compiled.apply(batch)
    assert gc.isenabled()
    gc.disable()
    try:
        compiled.apply(batch)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ValueError):
        compiled.apply(pa.table({"seq": [1]}))
    assert gc.isenabled()


def test_bounds_on_integers_beyond_2_53(mp):
    spec = {"fields": {"n": {"path": "$.n", "type": "int"}}, "validate": [{"field": "n", "min": -1000, "max": 0}]}
    result = mp.run(spec, [{"n": 9007199254740994}, {"n": -5}])
    assert result.dead.column("rule").to_pylist() == ["max"]


def test_raw_text_that_is_not_utf8_is_dead_lettered(mp):
    good, bad = b'{"a":"ok"}', b'{"a":"\xff"}'
    payload = bad + good
    offsets = pa.array([0, len(bad), len(payload)], pa.int32())
    raw = pa.Array.from_buffers(pa.string(), 2, [None, offsets.buffers()[1], pa.py_buffer(payload)])
    batch = pa.table({"seq": pa.array([1, 2], pa.int64()), "received_at": pa.array([0, 0], TS), "raw": raw})
    result = mp.compile({"fields": {"a": {"path": "$.a"}}}).apply(batch)
    assert result.rows.column("a").to_pylist() == ["ok"]
    (dead,) = result.dead.to_pylist()
    assert dead["rule"] == "json" and dead["raw"] == '{"a":"\ufffd"}'
    assert dead["reason"].startswith("record is not valid JSON: ")
