"""The type rules of path fields, through `apply`: what casts, what dead-letters, and why."""

import datetime as dt

import pytest

UTC = dt.timezone.utc
FAIL = object()


def cast(mp, value, type_, **options):
    """The mapped value of `value` read as `type_`, or FAIL with the dead row's reason."""
    result = mp.run({"fields": {"v": {"path": "$.v", "type": type_, **options}}}, [{"v": value}])
    if result.dead.num_rows:
        dead = result.dead.to_pylist()[0]
        assert dead["rule"] == "type" and dead["field"] == "v"
        return FAIL, dead
    return result.rows.column("v")[0].as_py(), None


@pytest.mark.parametrize(("value", "expected"), [
    ("abc", "abc"), ("", ""), ("ünï😀", "ünï😀"), (21, "21"), (21.5, "21.5"), (2.0, "2.0"), (True, "true"),
    (False, "false"), (None, None), (18446744073709551615, "18446744073709551615"), ({"a": 1}, FAIL), ([1], FAIL),
])
def test_string(mp, value, expected):
    assert cast(mp, value, "string")[0] == expected


@pytest.mark.parametrize(("value", "expected"), [
    (21, 21), (-5, -5), (2.0, 2), (1e3, 1000), ("21", 21), (" -21 ", -21), ("+7", 7), ("007", 7),
    (9223372036854775807, 9223372036854775807), (-9223372036854775808, -9223372036854775808),
    (None, None),
    (21.5, FAIL), ("21.5", FAIL), ("abc", FAIL), ("", FAIL), ("1e3", FAIL), ("0x10", FAIL), ("1_000", FAIL),
    ("٣", FAIL), (True, FAIL), (9223372036854775808, FAIL), (18446744073709551615, FAIL), (1e19, FAIL),
    ("99999999999999999999", FAIL), ("9" * 5000, FAIL), ({"a": 1}, FAIL), ([1], FAIL),
])
def test_int(mp, value, expected):
    assert cast(mp, value, "int")[0] == expected


@pytest.mark.parametrize(("value", "expected"), [
    (21.5, 21.5), (21, 21.0), ("21.5", 21.5), (" -1e3 ", -1000.0), (".5", 0.5), ("5.", 5.0),
    (18446744073709551615, 1.8446744073709552e19), (1.5e300, 1.5e300), (None, None),
    ("abc", FAIL), ("NaN", FAIL), ("inf", FAIL), ("Infinity", FAIL), ("1e999", FAIL), ("1_0", FAIL),
    (True, FAIL), ([1.0], FAIL), ({}, FAIL),
])
def test_double(mp, value, expected):
    assert cast(mp, value, "double")[0] == expected


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("true", True), ("FALSE", False), (" True ", True), ("1", True), ("0", False),
    (1, True), (0, False), (1.0, True), (None, None),
    (2, FAIL), (-1, FAIL), (0.5, FAIL), ("yes", FAIL), ("t", FAIL), ("", FAIL), ([], FAIL),
])
def test_bool(mp, value, expected):
    assert cast(mp, value, "bool")[0] == expected


@pytest.mark.parametrize(("value", "expected"), [
    ({"a": [1, "x", None]}, '{"a":[1,"x",null]}'), ([], "[]"), ("text", '"text"'), (1.5, "1.5"), (True, "true"),
    ({"ü": "😀"}, '{"ü":"😀"}'), (None, None),
])
def test_json(mp, value, expected):
    assert cast(mp, value, "json")[0] == expected


def test_reason_names_the_value_and_type(mp):
    _, dead = cast(mp, "abc", "int")
    assert dead["value"] == '"abc"'
    assert dead["reason"] == 'cannot cast "abc" to int'
    _, dead = cast(mp, {"deep": "x" * 500}, "double")
    assert dead["value"] == '{"deep":"' + "x" * 500 + '"}'  # the value column keeps it all
    assert len(dead["reason"]) < 200 and dead["reason"].endswith("… to double")


def test_defaults_fill_missing_and_null_but_not_failures(mp):
    spec = {"fields": {"v": {"path": "$.v", "type": "double", "default": 0}}}
    result = mp.run(spec, [{"v": 1.5}, {}, {"v": None}, {"v": "bad"}])
    assert result.rows.column("v").to_pylist() == [1.5, 0.0, 0.0]
    assert result.dead.column("rule").to_pylist() == ["type"]


def test_defaults_are_cast_to_the_type(mp):
    spec = {"fields": {"n": {"path": "$.n", "type": "int", "default": "5"},
                       "t": {"path": "$.t", "type": "timestamp", "default": "2024-01-01T00:00:00Z"},
                       "j": {"path": "$.j", "type": "json", "default": {"a": 1}}}}
    row = mp.run(spec, [{}]).rows.to_pylist()[0]
    assert row["n"] == 5 and row["t"] == dt.datetime(2024, 1, 1, tzinfo=UTC) and row["j"] == '{"a":1}'


def test_required_missing_or_null(mp):
    spec = {"fields": {"a": {"path": "$.a.b", "type": "string", "required": True}}}
    result = mp.run(spec, [{"a": {"b": "x"}}, {}, {"a": {"b": None}}, {"a": 5}, {"a": {"b": ""}}])
    assert result.rows.column("a").to_pylist() == ["x", ""]
    dead = result.dead.to_pylist()
    assert [d["seq"] for d in dead] == [2, 3, 4]
    assert {d["rule"] for d in dead} == {"required"} and {d["field"] for d in dead} == {"a"}
    assert dead[0]["value"] is None
    assert dead[0]["reason"] == 'required field "a" is missing or null at $.a.b'
