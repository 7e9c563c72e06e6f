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


@pytest.mark.parametrize("kind", ["http_poll", "graphql_poll", "pipeline"])
def test_a_source_kind_of_the_contract_not_served_yet_says_so(kind: str) -> None:
    found = _found({"id": "polled", "source": {"kind": kind, "url": "https://example.com", "interval": 30}})
    assert set(found) == {"source.kind"}
    assert "not supported yet" in found["source.kind"] and kind in found["source.kind"]
    assert "push, webhook, demo" in found["source.kind"]


def test_an_unknown_source_kind_lists_the_kinds() -> None:
    found = _found({"id": "a", "source": {"kind": "carrier-pigeon"}})
    assert set(found) == {"source.kind"} and "push, webhook, demo" in found["source.kind"]
    assert "not supported yet" not in found["source.kind"]


def test_sinks_are_not_supported_yet_and_the_rest_is_still_checked() -> None:
    found = _found({"id": "alerts", "sinks": [{"name": "hot", "kind": "webhook", "url": "https://example.com"}],
                    "mapping": {"fields": {"a": {"expr": "b", "type": "int"}}}})
    assert set(found) == {"sinks", "mapping.fields.a.expr"}
    assert "not supported yet" in found["sinks"]


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
