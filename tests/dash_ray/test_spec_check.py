"""Every problem of a spec in one answer (issue 22 item 9: a bad `id` hid four other
problems until it was fixed), and contract features not served yet named as such (item 10)."""

from __future__ import annotations

from typing import Any

import pytest

from dash_ray.errors import SpecError
from dash_ray.lake_roots import LakeRoots
from dash_ray.spec import parse_spec
from dash_ray.spec_check import admit_spec, check_spec

FIELDS = {
    "time": {"path": "$.ts", "type": "timestamp"},
    "device": {"path": "$.device_id", "type": "string"},
    "temp_c": {"path": "$.metrics.temp", "type": "double"},
}


def _found(data: Any, **options: Any) -> dict[str, str]:
    checked = check_spec(data, **options)
    assert checked.problems, "expected problems"
    paths = [p.path for p in checked.problems]
    assert len(paths) == len(set(paths)), paths
    return {p.path: p.message for p in checked.problems}


def test_a_bad_id_does_not_hide_the_mapping_rollup_and_silver_problems() -> None:
    found = _found({
        "id": "Bad_Id",
        "hot_records": 0,
        "mapping": {"fields": {**FIELDS, "temp_f": {"expr": "temp_x * 9 / 5 + 32", "type": "double"}},
                    "filter": "device <>",
                    "validate": [{"field": "nope", "min": 1}]},
        "storage": {"silver": "postgres", "rollups": {"by": ["temp_c"]}},
    }, has_database=False)
    assert set(found) == {"id", "hot_records", "mapping.fields.temp_f.expr", "mapping.filter",
                          "mapping.validate.0.field", "storage.rollups.by.0", "storage.silver"}
    assert "starting with a letter" in found["id"]
    assert "temp_x" in found["mapping.fields.temp_f.expr"]


def test_a_broken_field_is_reported_once_not_again_through_the_fields_that_use_it() -> None:
    found = _found({"id": "ok", "mapping": {"fields": {
        "t": {"path": "$.t", "type": "float"},                 # no such type
        "twice": {"expr": "t * 2", "type": "double"},          # fine once t is fixed
        "bad": {"expr": "nothing + 1", "type": "double"},      # wrong whatever t is
        "u": {"path": "$.u", "type": "int", "unit": "s"},      # unit on an int
        "u2": {"expr": "u + 1", "type": "int"}}}})
    assert set(found) == {"mapping.fields.t.type", "mapping.fields.bad.expr", "mapping.fields.u"}


def test_a_spec_without_problems_is_returned_whole() -> None:
    data = {"id": "weather", "mapping": {"fields": FIELDS}}
    checked = check_spec(data)
    assert checked.problems == [] and checked.spec == parse_spec(data)
    assert checked.valid() == parse_spec(data)


def test_valid_raises_one_spec_error_listing_them_all() -> None:
    with pytest.raises(SpecError) as caught:
        check_spec({"id": "Bad_Id", "mapping": {"fields": {"a": {"expr": "b", "type": "int"}}}}).valid()
    assert [p.path for p in caught.value.problems] == ["id", "mapping.fields.a.expr"]


def test_not_an_object() -> None:
    assert [p.path for p in check_spec(["a"]).problems] == ["(spec)"]


def test_the_mqtt_and_pipeline_sources_are_checked_with_their_paths() -> None:
    found = _found({"id": "m", "source": {"kind": "mqtt", "url": "http://broker", "topics": [], "qos": 2,
                                          "password": "plain"}})
    assert set(found) == {"source.url", "source.topics", "source.qos", "source.password"}
    found = _found({"id": "f", "source": {"kind": "pipeline", "from": "Not An Id"}})
    assert set(found) == {"source.from"}


def test_a_polling_sources_paths_are_checked_with_the_rest_of_the_spec() -> None:
    found = _found({"id": "polled", "source": {
        "kind": "http_poll", "url": "https://api.example.com/items", "records": "data[*]", "primary_key": "$.id",
        "pagination": {"kind": "cursor", "cursor_path": "$.meta[", "cursor_param": "cursor"}},
        "mapping": {"fields": {"a": {"expr": "nope(", "type": "int"}}}})
    assert set(found) == {"source.records", "source.pagination.cursor_path", "mapping.fields.a.expr"}
    assert "starts with '$'" in found["source.records"]
    graphql = _found({"id": "polled", "source": {"kind": "graphql_poll", "url": "ftp://x", "query": "{ a }"}})
    assert set(graphql) == {"source.url"}


def test_an_unknown_source_kind_lists_the_kinds() -> None:
    found = _found({"id": "a", "source": {"kind": "carrier-pigeon"}})
    assert set(found) == {"source.kind"}
    assert "push, webhook, demo, http_poll, graphql_poll, mqtt, pipeline" in found["source.kind"]
    assert "not supported yet" not in found["source.kind"]


def test_a_broken_sink_is_reported_and_the_rest_is_still_checked() -> None:
    found = _found({"id": "alerts", "sinks": [{"name": "hot", "kind": "webhook", "url": "ftp://example.com"}],
                    "mapping": {"fields": {"a": {"expr": "b", "type": "int"}}}})
    assert set(found) == {"sinks.0.url", "mapping.fields.a.expr"}


def test_sink_when_templates_and_group_fields_are_checked_against_the_mapped_fields() -> None:
    found = _found({"id": "alerts", "mapping": {"fields": {"temp_c": {"path": "$.t", "type": "double"},
                                                          "device": {"path": "$.d", "type": "string"}}},
                    "sinks": [{"name": "hook", "kind": "webhook", "url": "https://x.example", "when": "temp_c >"},
                              {"name": "ops", "kind": "slack", "url": {"secret": "slack-url"}, "when": "device",
                               "template": "{device} {nope}", "group_by": ["zone"]},
                              {"name": "mail", "kind": "email", "from": "a@x", "to": ["b@x"],
                               "subject": "{device.upper}", "when": "temp_c > 40 and device <> 'x'"}]})
    assert set(found) == {"sinks.0.when", "sinks.1.when", "sinks.1.template", "sinks.1.group_by", "sinks.2.subject"}
    assert "boolean" in found["sinks.1.when"] and "'nope'" in found["sinks.1.template"]


# -- admission: the one check before a pipeline runs (at deploy and at each start) -----------


def _admission_problems(data: Any, **options: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as refused:
        admit_spec(data, **options)
    return {p.path: p.message for p in refused.value.problems}


def test_admission_names_every_problem_at_once_with_the_platform_and_the_spec_it_replaces(tmp_path) -> None:
    current = parse_spec({"id": "p", "mapping": {"fields": FIELDS}})
    narrowed = {"id": "p", "hot_records": 0,
                "mapping": {"fields": {**FIELDS, "temp_c": {"path": "$.metrics.temp", "type": "int"}}},
                "storage": {"silver": "postgres", "lake": "memory://elsewhere"}}
    found = _admission_problems(narrowed, has_database=False, current=current,
                                lake_roots=LakeRoots(str(tmp_path / "lake")))
    assert set(found) == {"hot_records", "storage.silver", "mapping.fields.temp_c.type", "storage.lake"}
    assert "widen" in found["mapping.fields.temp_c.type"] and "not durable" in found["storage.lake"]


def test_admission_of_a_broken_id_names_its_other_problems_but_not_the_replaced_specs() -> None:
    found = _admission_problems({"id": "Bad_Id", "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}},
                                 "storage": {"silver": "postgres"}}, has_database=False)
    assert set(found) == {"id", "storage.silver"}
    assert set(_admission_problems(["not", "a", "spec"], has_database=True)) == {"(spec)"}


def test_admission_returns_the_spec_and_depends_on_the_platforms_database() -> None:
    data = {"id": "p", "mapping": {"fields": FIELDS}, "storage": {"silver": "postgres"}}
    assert admit_spec(data, has_database=True) == parse_spec(data)
    assert set(_admission_problems(data, has_database=False)) == {"storage.silver"}
    widened = {"id": "p", "mapping": {"fields": {**FIELDS, "temp_c": {"path": "$.metrics.temp", "type": "string"}}}}
    assert admit_spec(widened, has_database=False, current=parse_spec(data)).mapping.fields["temp_c"].type == "string"
