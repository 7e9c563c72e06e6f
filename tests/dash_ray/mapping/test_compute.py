"""Every operator and function, with nulls, zero divisors and overflow, through `apply`."""

import datetime as dt
import math

import pytest

UTC = dt.timezone.utc
NULLS = {"i": None, "j": None, "x": None, "y": None, "s": None, "u": None, "b": None, "t": None, "js": None}


@pytest.mark.parametrize(("expr", "type_", "value"), [
    ("i + j", "int", 9), ("i - j", "int", 5), ("i * j", "int", 14), ("i / j", "double", 3.5),
    ("i % j", "int", 1), ("-i % j", "int", -1), ("i % -j", "int", 1), ("x % 2", "double", 0.5),
    ("-x % 2", "double", -0.5), ("x + i", "double", 9.5), ("x * y", "double", -3.75), ("x / 2", "double", 1.25),
    ("-i", "int", -7), ("+x", "double", 2.5), ("i + j * 3", "int", 13), ("(i + j) * 3", "int", 27),
    ("1 + 2", "int", 3), ("7 / 2", "double", 3.5), ("i = 7", "bool", True), ("i <> 7", "bool", False),
    ("i != 7", "bool", False), ("i < x", "bool", False), ("i <= 7.0", "bool", True), ("x > y", "bool", True),
    ("x >= 2.5", "bool", True), ("s = 'Hello'", "bool", True), ("s < 'a'", "bool", True),
    ("b = TRUE", "bool", True), ("t > '2024-05-01'", "bool", True),
    ("t = '2024-05-01T12:34:56.789Z'", "bool", True), ("t < received_at", "bool", False),
    ("b AND i > 1", "bool", True), ("b AND FALSE", "bool", False), ("FALSE OR b", "bool", True),
    ("NOT b", "bool", False), ("s IS NULL", "bool", False), ("s IS NOT NULL", "bool", True),
    ("i IN (1, 7)", "bool", True), ("i IN (1, 2)", "bool", False), ("i NOT IN (1, 2)", "bool", True),
    ("x IN (2.5)", "bool", True), ("i IN (j, 7)", "bool", True), ("s IN ('a', 'Hello')", "bool", True),
    ("s LIKE 'He%'", "bool", True), ("s LIKE 'h%'", "bool", False), ("s LIKE 'H_llo'", "bool", True),
    ("s NOT LIKE '%z%'", "bool", True), ("'50%' LIKE '50\\%'", "bool", True), ("'50x' LIKE '50\\%'", "bool", False),
    ("s || '-' || u", "string", "Hello-wörld"), ("s || i || x || b", "string", "Hello72.5true"),
    ("'at ' || t", "string", "at 2024-05-01T12:34:56.789000Z"), ("'x' || 2.0", "string", "x2.0"),
    ("CASE WHEN i > 5 THEN 'big' ELSE 'small' END", "string", "big"),
    ("CASE WHEN i > 50 THEN 'big' WHEN i > 5 THEN 'mid' END", "string", "mid"),
    ("CASE WHEN i > 50 THEN 'big' END", "string", None),
    ("CASE i WHEN 1 THEN 'one' WHEN 7 THEN 'seven' ELSE 'other' END", "string", "seven"),
    ("CASE WHEN b THEN 1 ELSE 2.5 END", "double", 1.0),
    ("coalesce(NULL, i, 0)", "int", 7), ("lower(s)", "string", "hello"), ("upper(u)", "string", "WÖRLD"),
    ("length(u)", "int", 5), ("substr(s, 2, 3)", "string", "ell"), ("substr(s, 2)", "string", "ello"),
    ("substr(s, 0, 2)", "string", "H"), ("substr(s, -5, 2)", "string", ""), ("substr(s, 9)", "string", ""),
    ("substr(u, 2, 1)", "string", "ö"), ("substr(s, j, j)", "string", "el"), ("substr(s, 2, -1)", "string", None),
    ("substr(s, j, -1)", "string", None), ("substr(s, j)", "string", "ello"),
    ("abs(y)", "double", 1.5), ("abs(-i)", "int", 7), ("round(x)", "double", 3.0), ("round(-x)", "double", -3.0),
    ("round(x * 1.111, 2)", "double", 2.78), ("round(1234, -2)", "int", 1200), ("round(-1250, -2)", "int", -1300),
    ("round(i)", "int", 7), ("floor(y)", "double", -2.0), ("ceil(y)", "double", -1.0), ("floor(i)", "int", 7),
    ("date_trunc('minute', t)", "timestamp", dt.datetime(2024, 5, 1, 12, 34, tzinfo=UTC)),
    ("date_trunc('hour', t)", "timestamp", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("date_trunc('day', t)", "timestamp", dt.datetime(2024, 5, 1, tzinfo=UTC)),
    ("date_trunc('week', t)", "timestamp", dt.datetime(2024, 4, 29, tzinfo=UTC)),
    ("date_trunc('month', t)", "timestamp", dt.datetime(2024, 5, 1, tzinfo=UTC)),
    ("date_trunc('year', t)", "timestamp", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("date_trunc('second', t)", "timestamp", dt.datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),
    ("epoch(t)", "double", 1714566896.789), ("epoch(received_at)", "double", 1_700_000_000.0),
    ("received_at", "timestamp", dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ("js", "json", '{"k":[1,2]}'), ("coalesce(js, js)", "json", '{"k":[1,2]}'),
])
def test_operators_and_functions(mp, expr, type_, value):
    assert mp.evaluate(expr, type_) == value


@pytest.mark.parametrize(("expr", "type_"), [
    ("i / 0", "double"), ("i % 0", "int"), ("x / 0", "double"), ("x % 0", "double"), ("0 / 0", "double"),
    ("i / (j - 2)", "double"), ("i % (j - 2)", "int"), ("x / (y + 1.5)", "double"),
])
def test_division_by_zero_is_null(mp, expr, type_):
    assert mp.evaluate(expr, type_) is None


@pytest.mark.parametrize(("expr", "type_"), [
    ("9223372036854775807 + i", "int"), ("-9223372036854775808 - i", "int"), ("4611686018427387904 * j", "int"),
    ("-(-9223372036854775808 + i - 7)", "int"), ("abs(-9223372036854775808 + i - 7)", "int"),
    ("1e308 * x", "double"), ("round(9223372036854775807, -1)", "int"),
])
def test_overflow_is_null(mp, expr, type_):
    assert mp.evaluate(expr, type_) is None


def test_int64_min_modulo_minus_one(mp):
    assert mp.evaluate("(-9223372036854775808 + i - 7) % -1", "int") == 0


@pytest.mark.parametrize(("expr", "type_", "value"), [
    ("i + 1", "int", None), ("x * 2", "double", None), ("i / 2", "double", None), ("i % 2", "int", None),
    ("-i", "int", None), ("i = 1", "bool", None), ("s < 'a'", "bool", None), ("NOT b", "bool", None),
    ("b AND TRUE", "bool", None), ("b AND FALSE", "bool", False), ("b OR TRUE", "bool", True),
    ("b OR FALSE", "bool", None), ("s IS NULL", "bool", True), ("s IS NOT NULL", "bool", False),
    ("i IN (1, 2)", "bool", None), ("i NOT IN (1, 2)", "bool", None), ("s LIKE '%'", "bool", None),
    ("s || 'x'", "string", None), ("lower(s)", "string", None), ("length(s)", "int", None),
    ("substr(s, 1, 2)", "string", None), ("abs(x)", "double", None), ("round(x, 1)", "double", None),
    ("round(i, -1)", "int", None), ("floor(x)", "double", None), ("date_trunc('day', t)", "timestamp", None),
    ("epoch(t)", "double", None), ("coalesce(i, j)", "int", None), ("coalesce(i, 3)", "int", 3),
    ("CASE WHEN b THEN 1 ELSE 2 END", "int", 2), ("NULL", "int", None), ("NULL = NULL", "bool", None),
    ("NULL IS NULL", "bool", True), ("i + NULL", "int", None), ("js IS NULL", "bool", True),
])
def test_null_in_null_out(mp, expr, type_, value):
    assert mp.evaluate(expr, type_, NULLS) == value


@pytest.mark.parametrize(("expr", "value"), [
    ("7 IN (1, NULL)", None), ("1 IN (1, NULL)", True), ("7 NOT IN (1, NULL)", None), ("i IN (i, NULL)", True),
])
def test_in_with_null_follows_sql(mp, expr, value):
    assert mp.evaluate(expr, "bool") == value


def test_expression_results_cast_to_the_field_type(mp):
    assert mp.evaluate("i", "double") == 7.0
    assert mp.evaluate("i", "string") == "7"
    assert mp.evaluate("x", "string") == "2.5"
    assert mp.evaluate("b", "string") == "true"
    assert mp.evaluate("t", "string") == "2024-05-01T12:34:56.789000Z"
    assert mp.evaluate("date_trunc('day', t)", "string") == "2024-05-01T00:00:00Z"
    assert mp.evaluate("x * 2", "int") == 5
    assert mp.evaluate("'42'", "int") == 42
    assert mp.evaluate("'4.5'", "double") == 4.5
    assert mp.evaluate("'TRUE'", "bool") is True
    assert mp.evaluate("j - 1", "bool") is True
    assert mp.evaluate("1700000000", "timestamp") == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert mp.evaluate("1700000000000", "timestamp", unit="ms") == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert mp.evaluate("'01/05/2024'", "timestamp", format="%d/%m/%Y") == dt.datetime(2024, 5, 1, tzinfo=UTC)
    assert mp.evaluate("s", "json") == '"Hello"'
    assert mp.evaluate("i", "json") == "7"
    assert mp.evaluate("t", "json") == '"2024-05-01T12:34:56.789000Z"'
    assert mp.evaluate("js", "string") is not None  # a json object to string is a cast failure
    assert mp.evaluate("NULL", "timestamp") is None


def test_runtime_cast_failure_of_an_expression_is_a_type_dead_letter(mp):
    dead = mp.evaluate("s || 'x'", "int")
    assert dead["rule"] == "type" and dead["field"] == "out"
    assert dead["value"] == '"Hellox"'
    assert dead["reason"] == 'cannot cast "Hellox" to int (from the expression\'s string result)'
    dead = mp.evaluate("x", "int")
    assert dead["rule"] == "type" and dead["value"] == "2.5"
    dead = mp.evaluate("js", "string")
    assert dead["rule"] == "type" and dead["value"] == '{"k":[1,2]}'


def test_epoch_keeps_microseconds(mp):
    value = mp.evaluate("epoch(t)", "double")
    assert math.isclose(value, 1714566896.789, rel_tol=0, abs_tol=1e-6)


@pytest.mark.parametrize(("value", "pattern", "matches"), [
    ("a.c", "a.c", True), ("abc", "a.c", False), ("a(c", "a(c", True), ("a[c]", "a[c]", True), ("x+y", "x+y", True),
    ("a\nc", "a_c", True), ("ab", "a", False), ("", "%", True), ("ü", "_", True), ("a\\b", "a\\\\b", True),
])
def test_like_treats_only_percent_and_underscore_as_wildcards(mp, value, pattern, matches):
    literal = pattern.replace("'", "''")
    assert mp.evaluate(f"s LIKE '{literal}'", "bool", {"s": value}) is matches


@pytest.mark.parametrize(("expr", "type_", "value"), [
    ("i < 0.5", "bool", False), ("i = 9007199254740993.0", "bool", True), ("i + 0.5", "double", 9007199254740992.0),
    ("i IN (1.5, 2)", "bool", False), ("i IN (j, 1.5)", "bool", False),
    ("coalesce(i, 1.5)", "double", 9007199254740992.0),
    ("CASE WHEN b THEN i ELSE 0.5 END", "double", 9007199254740992.0), ("i", "double", 9007199254740992.0),
])
def test_integers_beyond_2_53_mix_with_doubles_without_errors(mp, expr, type_, value):
    record = {**NULLS, "i": 9007199254740993, "j": 2, "b": True}
    assert mp.evaluate(expr, type_, record) == value


def test_epoch_of_distant_timestamps(mp):
    assert mp.evaluate("epoch(t)", "double", {"t": "0001-01-01T00:00:00Z"}) == -62135596800.0
    late = mp.evaluate("epoch(t)", "double", {"t": "9999-12-31T23:59:59.999999Z"})
    assert math.isclose(late, 253402300800.0, abs_tol=1e-3)  # a double holds ~16 digits
