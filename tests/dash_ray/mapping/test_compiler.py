"""Compiling a mapping: every problem of a spec reported at once, with its path and position."""

import pytest

from dash_ray.errors import Problem, SpecError


def test_every_problem_is_reported_with_path_and_position(mp):
    found = mp.problems({
        "fields": {
            "time": {"path": "$.ts", "type": "string"},
            "bad_path": {"path": "$.a..b"},
            "list": {"path": "$.tags[*].name", "type": "string"},
            "n": {"path": "$.n", "type": "int", "default": "many"},
            "r": {"path": "$.r", "type": "int", "required": True, "default": 1},
            "tz": {"path": "$.tz", "type": "timestamp", "timezone": "Mars/Base"},
            "fmt": {"path": "$.f", "type": "timestamp", "format": "%Q"},
            "e1": {"expr": "n + nope", "type": "int"},
            "e2": {"expr": "n +", "type": "int"},
            "e3": {"expr": "n > 1", "type": "int"},
            "e4": {"expr": "later * 2", "type": "int"},
            "later": {"path": "$.l", "type": "int"},
        },
        "filter": "n + 1",
        "validate": [{"field": "ghost", "required": True}, {"field": "bad_path", "regex": "(?<=x)"},
                     {"field": "list", "min": 0}, {"field": "n", "enum": [1, "x"]},
                     {"field": "fmt", "max": 1e300}],
    })
    assert found == [
        Problem("mapping.fields.time.type", "the time field must have type timestamp, not string"),
        Problem("mapping.fields.bad_path.path", "expected a name after '.' (quote odd names: ['odd name'])", 5),
        Problem("mapping.fields.list.path", "a wildcard yields a list: declare type json, not string", 7),
        Problem("mapping.fields.n.default", 'default "many" is not a valid int'),
        Problem("mapping.fields.r.default", "a required field never uses its default; drop one"),
        Problem("mapping.fields.tz.timezone",
                "unknown time zone 'Mars/Base'; use an IANA name such as 'Europe/Paris' or 'UTC'"),
        Problem("mapping.fields.fmt.format", "unknown format code %Q"),
        Problem("mapping.fields.e1.expr", found[7].message, 5),
        Problem("mapping.fields.e2.expr", "the expression ends where a value was expected", 4),
        Problem("mapping.fields.e3.expr", "the expression gives bool, which cannot be stored in a int field", 1),
        Problem("mapping.fields.e4.expr", "field 'later' is declared after this expression; move it above", 1),
        Problem("mapping.filter", "the filter must be a boolean expression, not int", 1),
        Problem("mapping.validate.0.field", found[12].message),
        Problem("mapping.validate.1.regex", found[13].message),
        Problem("mapping.validate.2.min", "min applies to int, double and timestamp fields; 'list' is string"),
        Problem("mapping.validate.3.enum", 'enum value "x" is not a valid int'),
        Problem("mapping.validate.4.max", "max of a timestamp is epoch seconds within years 0001-9999"),
    ]
    assert found[7].message.startswith("unknown field 'nope' (known here: ")
    assert found[12].message.startswith("unknown field 'ghost'")
    assert found[13].message.startswith("not a valid RE2 regex")


def test_spec_error_carries_the_problems(mp):
    with pytest.raises(SpecError) as err:
        mp.compile({"fields": {"a": {"expr": "1 +* 2"}}})
    assert err.value.where == "mapping.fields.a.expr"
    assert err.value.to_body()["error"]["problems"] == [
        {"path": "mapping.fields.a.expr", "message": "unexpected '*' (a value was expected)", "position": 4}]


def test_regex_on_a_non_string_field_is_a_problem(mp):
    (problem,) = mp.problems({"fields": {"n": {"path": "$.n", "type": "int"}},
                              "validate": [{"field": "n", "regex": "1"}]})
    assert problem.path == "mapping.validate.0.regex"
