"""Specs come from many tenants: nothing in one may read a file, run code or exhaust the stack.

The engine has no SQL and no interpreter of user text: expressions are parsed into a tree of
whitelisted operators and evaluated with pyarrow kernels; paths are walked over parsed JSON.
These tests try the usual smuggling routes and watch every file the process opens."""

import sys
import time

import pytest

from dash_ray.errors import SpecError

_opened: list[str] = []
_watching = False


def _audit(event: str, args: tuple) -> None:
    if _watching and event == "open":
        _opened.append(str(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only while watching

HOSTILE = "'); SELECT * FROM read_csv('/etc/passwd'); --"
LITERAL = "x' || (SELECT 1) || '); read_text('/etc/passwd') --"
SMUGGLERS = {
    "fields": {
        "quote": {"path": "$['\\'); SELECT * FROM read_csv(\\'/etc/passwd\\'); --']", "type": "string"},
        "dq": {"path": '$["\\"; COPY t TO \'/tmp/x\'; --"]', "type": "json"},
        "literal": {"expr": "'x'' || (SELECT 1) || ''); read_text(''/etc/passwd'') --'", "type": "string"},
        "when": {"path": "$.t", "type": "timestamp", "format": "%Y' || read_csv('/etc/passwd') || '"},
        "zone": {"path": "$.z", "type": "timestamp", "timezone": "UTC", "default": "2024-01-01T00:00:00"},
        "like": {"expr": "literal LIKE '%/etc/passwd%'", "type": "bool"},
    },
    "filter": "quote IS NULL OR quote <> '/etc/passwd'",
    "validate": [{"field": "quote", "regex": "^(/etc/passwd|[^']*)$"},
                 {"field": "literal", "enum": [HOSTILE, LITERAL]}],
}


@pytest.fixture()
def watch_files():
    global _watching
    _opened.clear()
    _watching = True
    try:
        yield _opened
    finally:
        _watching = False


def test_smuggled_text_stays_data_and_no_file_is_opened(mp, watch_files):
    compiled = mp.compile(SMUGGLERS)
    record = {"'); SELECT * FROM read_csv('/etc/passwd'); --": "/etc/passwd",
              "t": "2024' || read_csv('/etc/passwd') || '"}
    result = compiled.apply(mp.batch([record, {"'); SELECT * FROM read_csv('/etc/passwd'); --": "ok"}]))
    assert result.filtered == 1
    row = result.rows.to_pylist()[0]
    assert row["quote"] == "ok"
    assert row["literal"] == LITERAL
    assert row["like"] is True
    assert row["when"] is None  # the 'format' is literal text that the value does not match
    assert not [p for p in watch_files if "passwd" in p or "/tmp/x" in p]


@pytest.mark.parametrize(("mapping", "path"), [
    ({"fields": {"a": {"expr": "read_csv('/etc/passwd')"}}}, "mapping.fields.a.expr"),
    ({"fields": {"a": {"expr": "read_text('/etc/passwd')"}}}, "mapping.fields.a.expr"),
    ({"fields": {"a": {"expr": "getenv('HOME')"}}}, "mapping.fields.a.expr"),
    ({"fields": {"a": {"expr": "__import__('os')"}}}, "mapping.fields.a.expr"),
    ({"fields": {"a": {"expr": "(SELECT 1)"}}}, "mapping.fields.a.expr"),
    ({"fields": {"a": {"expr": "1; DROP TABLE x"}}}, "mapping.fields.a.expr"),
    ({"fields": {"a": {"expr": "\"x\"\"; ATTACH '/etc/passwd'\" + 1"}}}, "mapping.fields.a.expr"),
    ({"fields": {"a": {"expr": "lower(received_at::VARCHAR)"}}}, "mapping.fields.a.expr"),
    ({"fields": {"a": {"path": "$.t", "type": "timestamp", "timezone": "../../../../etc/passwd"}}},
     "mapping.fields.a.timezone"),
    ({"fields": {"a": {"path": "$.t", "type": "timestamp", "timezone": "/etc/passwd"}}}, "mapping.fields.a.timezone"),
    ({"filter": "EXISTS (SELECT * FROM read_csv('/etc/passwd'))"}, "mapping.filter"),
])
def test_anything_but_the_whitelist_is_a_problem(mp, watch_files, mapping, path):
    with pytest.raises(SpecError) as err:
        mp.compile(mapping)
    assert err.value.problems[0].path == path
    assert not [p for p in watch_files if "passwd" in p]


@pytest.mark.parametrize("expr", [
    "(" * 1000 + "1" + ")" * 1000,
    "-" * 4000 + "1",
    "NOT " * 1000 + "TRUE",
    "1" + " + 1" * 1300,
    "coalesce(" * 400 + "1" + ")" * 400,
    "x" * 5000,
])
def test_hostile_sizes_are_problems_not_crashes(mp, expr):
    with pytest.raises(SpecError) as err:
        mp.compile({"fields": {"a": {"expr": expr}}})
    assert err.value.problems[0].path == "mapping.fields.a.expr"


def test_regex_runs_in_linear_time(mp):
    spec = {"fields": {"s": {"path": "$.s", "type": "string"}}, "validate": [{"field": "s", "regex": "^(a+)+$"}]}
    started = time.perf_counter()
    result = mp.run(spec, [{"s": "a" * 50_000 + "!"}])
    assert time.perf_counter() - started < 2
    assert result.dead.column("rule").to_pylist() == ["regex"]


def test_huge_and_deep_records_are_mapped_or_dead_lettered(mp):
    deep = "[" * 5000 + "]" * 5000
    big = '{"s": "' + "x" * 2_000_000 + '"}'
    spec = {"fields": {"s": {"path": "$.s", "type": "string"}, "all": {"path": "$", "type": "json"}}}
    result = mp.run(spec, ['{"a": ' + deep + "}", big])
    assert result.rows.num_rows + result.dead.num_rows == 2
    assert len(result.rows.column("s").to_pylist()[-1]) == 2_000_000


def test_values_nested_too_deep_to_write_are_type_failures(mp):
    deep = '{"a": ' + "[" * 300 + "]" * 300 + ', "b": 1}'
    cases = [({"fields": {"a": {"path": "$.a", "type": "json"}}}, "a"),
             ({"fields": {"a": {"path": "$.a[*]", "type": "json"}}}, "a"),
             ({"fields": {"a": {"path": "$.a", "type": "string"}}}, "a"),
             ({"fields": {"b": {"path": "$.b", "type": "int"}}, "keep_extra": True}, "extra")]
    for spec, field in cases:
        (dead,) = mp.run(spec, [deep]).dead.to_pylist()
        assert (dead["rule"], dead["field"], dead["value"]) == ("type", field, None)
        assert "255 levels" in dead["reason"]
    assert mp.run({}, [deep]).rows.column("extra").to_pylist() == [deep]
