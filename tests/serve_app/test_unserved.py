"""What the contract names but this code does not serve yet, and requests no route takes
(issue 22 item 10): each answers the JSON error body every other error has, saying so, instead
of Starlette's plain-text "Not Found" or pydantic's "Extra inputs are not permitted"."""

from __future__ import annotations

import pytest

from dash_ray.client import Client
from dash_ray.errors import MethodNotAllowedError, NotFoundError, SpecError
from serve_app.responses import route_error


def test_route_errors_by_path() -> None:
    missing = route_error("GET", "/v1/nope", 404)
    assert isinstance(missing, NotFoundError) and missing.message.startswith("no route GET /v1/nope;")
    wrong = route_error("POST", "/v1/pipelines", 405, "GET, HEAD")
    assert isinstance(wrong, MethodNotAllowedError) and "takes GET, HEAD" in wrong.message


@pytest.mark.ray
def test_unknown_and_unserved_routes_answer_json(platform) -> None:
    with platform.http() as http:
        missing = http.get("/v1/nope", headers={"x-request-id": "req-1"})
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
        assert missing.json() == {"error": {"type": "NotFoundError", "where": "/v1/nope", "request_id": "req-1",
                                            "message": "no route GET /v1/nope; docs/API.md lists the routes served"}}
        wrong = http.post("/v1/pipelines", json={})
        assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "MethodNotAllowedError"
        assert "GET" in wrong.headers["allow"]
        # Served since issue 24: an unknown pipeline's sinks are a 404, not a 501.
        for method, path in (("GET", "/v1/pipelines/x/sinks"), ("POST", "/v1/pipelines/x/sinks/hot/redeliver")):
            unknown = http.request(method, path)
            assert unknown.status_code == 404, (method, path, unknown.text)
    with Client(platform.url, token=platform.token) as client, pytest.raises(NotFoundError):
        client._request("GET", "/v1/pipelines/x/sinks")


@pytest.mark.ray
def test_a_broken_sink_is_a_422_naming_its_field(platform) -> None:
    with platform.http() as http:
        sinks = http.put("/v1/pipelines/alerts", json={"sinks": [{"name": "hot", "kind": "webhook",
                                                                    "when": "temp_c >"}]})
        assert sinks.status_code == 422
        assert [p["path"] for p in sinks.json()["error"]["problems"]] == ["sinks.0.url"]
        assert http.get("/v1/pipelines/alerts").status_code == 404  # nothing was made


@pytest.mark.ray
def test_every_problem_of_a_spec_comes_in_one_422(platform) -> None:
    """Item 9 over HTTP: a bad id (here one that does not match the URL's) and the shape,
    mapping and rollup problems of the rest, all in one answer."""
    spec = {"id": "other-id", "hot_records": 0,
            "mapping": {"fields": {"temp_c": {"path": "$.t", "type": "double"},
                                   "temp_f": {"expr": "temp_x * 2", "type": "double"}},
                        "filter": "temp_c <>"},
            "storage": {"rollups": {"by": ["temp_c"]}}}
    with platform.http() as http:
        answer = http.put("/v1/pipelines/one-id", json=spec)
    assert answer.status_code == 422
    assert [p["path"] for p in answer.json()["error"]["problems"]] == [
        "id", "hot_records", "mapping.fields.temp_f.expr", "mapping.filter", "storage.rollups.by.0"]
    with pytest.raises(SpecError) as caught:
        platform.client.deploy({**spec, "id": "one-id", "hot_records": 5})
    assert [p.path for p in caught.value.problems] == ["mapping.fields.temp_f.expr", "mapping.filter",
                                                       "storage.rollups.by.0"]


@pytest.mark.ray
def test_a_yaml_body_error_says_line_and_column_not_pyyamls_stream_name(platform) -> None:
    with platform.http() as http:
        bad = http.put("/v1/pipelines/yaml-bad", content=b"id: yaml-bad\nmapping: {fields: [\n",
                       headers={"content-type": "application/yaml"})
    assert bad.status_code == 400
    message = bad.json()["error"]["message"]
    assert message.startswith("body is not valid YAML: line 3, column 1: ") and "unicode" not in message, message
