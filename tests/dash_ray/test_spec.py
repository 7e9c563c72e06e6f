import pytest
from pydantic import ValidationError

from dash_ray.errors import SpecError
from dash_ray.spec import PipelineSpec, load_spec, parse_spec

MINIMAL = {
    "id": "weather",
    "source": {"kind": "push"},
    "mapping": {"fields": {
        "time": {"path": "$.ts", "type": "timestamp"},
        "device": {"path": "$.device_id", "type": "string"},
        "temp_c": {"path": "$.metrics.temp", "type": "double"}}},
}


def problems(data):
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return {p.path: p.message for p in err.value.problems}


def test_minimal_spec_from_api_md_gets_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.hot_records == 100 and spec.flush.records == 10_000 and spec.flush.seconds == 1.0
    assert spec.mapping.fields["temp_c"].type == "double"


def test_round_trip_keeps_validate_key():
    data = {**MINIMAL, "mapping": {**MINIMAL["mapping"], "validate": [{"field": "temp_c", "min": -90}]}}
    spec = parse_spec(data)
    assert spec.to_json_dict()["mapping"]["validate"][0]["min"] == -90
    assert parse_spec(spec.to_json_dict()) == spec


def test_every_problem_is_reported_with_its_path():
    found = problems({
        "id": "Bad_ID",
        "source": {"kind": "webhook", "verify": "hmac"},
        "mapping": {"fields": {"seq": {"path": "$.a"}, "x": {"path": "$.a", "expr": "1"},
                               "t": {"path": "$.t", "type": "float"}}},
        "flush": {"records": 0},
        "typo": 1,
    })
    assert set(found) == {"id", "source", "mapping.fields.seq", "mapping.fields.x", "mapping.fields.t.type",
                          "flush.records", "typo"}
    assert "reserved" in found["mapping.fields.seq"]


def test_unknown_source_kind():
    assert "source" in " ".join(problems({"id": "a", "source": {"kind": "carrier-pigeon"}}))


def test_spec_is_frozen():
    spec = parse_spec(MINIMAL)
    with pytest.raises(ValidationError, match="frozen"):
        spec.id = "other"  # type: ignore[misc]


def test_load_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("id: weather\nmapping:\n  fields:\n    device: {path: $.device_id}\n")
    assert load_spec(yaml_file).mapping.fields["device"].path == "$.device_id"
    assert load_spec(str(yaml_file)).id == "weather"
    assert load_spec('{"id": "j"}').id == "j"


def test_load_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"^spec, line 2, column 1: .* starts at line 1, column 5\)$"):
        load_spec("id: [unclosed\n")
    # A missing file is not an invalid spec: the OSError a user knows, naming the file.
    with pytest.raises(FileNotFoundError) as missing:
        load_spec(tmp_path / "missing.yaml")
    assert missing.value.filename == str(tmp_path / "missing.yaml")


def test_a_yaml_or_json_error_names_the_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: weather\nmapping:\n  fields: [unclosed\n")
    with pytest.raises(SpecError) as caught:
        load_spec(bad)
    assert str(caught.value).startswith(f"{bad}, line 4, column 1: not valid YAML: "), str(caught.value)
    assert "<unicode string>" not in str(caught.value) and str(caught.value).count(str(bad)) == 1
    broken_json = tmp_path / "bad.json"
    broken_json.write_text('{"id": "weather",\n "mapping": }')
    with pytest.raises(SpecError, match=rf"^{broken_json}, line 2, column 13: not valid JSON: "):
        load_spec(broken_json)


def test_non_object_spec():
    with pytest.raises(SpecError):
        parse_spec(["not", "a", "spec"])


def test_webhook_github_needs_no_header():
    spec = parse_spec({"id": "gh", "source": {"kind": "webhook", "verify": "github"}})
    assert isinstance(spec, PipelineSpec) and spec.source.kind == "webhook"
