"""The dashboard routes over HTTP: PUT as JSON or YAML (201 then 200, versions), GET one and
the list, DELETE; 422 with paths for a bad dashboard or one over fields a pipeline lacks;
401/403 by scope; 404; and the SDK's methods and `deploy` of a dashboard file."""

from __future__ import annotations

import uuid

import pytest

from dash_ray.client import Dashboard
from dash_ray.errors import ForbiddenError, NotFoundError, SpecError

pytestmark = pytest.mark.ray

FIELDS = {"device": {"path": "$.device", "type": "string"}, "temp_c": {"path": "$.temp", "type": "double"}}


@pytest.fixture()
def pipeline_id(platform) -> str:
    created = platform.client.deploy({"id": f"dash-{uuid.uuid4().hex[:6]}", "mapping": {"fields": FIELDS}})
    yield created.id
    platform.client.delete(created.id)


def test_put_get_list_delete(platform, pipeline_id) -> None:
    board = f"b-{uuid.uuid4().hex[:6]}"
    body = {"title": "Ops", "widgets": [{"kind": "line", "pipeline": pipeline_id, "fields": ["temp_c"]}]}
    with platform.http() as http:
        created = http.put(f"/v1/dashboards/{board}", json=body)
        assert created.status_code == 201
        assert created.json()["version"] == 1 and created.json()["widgets"][0]["window"] == "15m"
        yaml_body = f"title: Ops 2\nwidgets:\n  - kind: stat\n    pipeline: {pipeline_id}\n    agg: max:temp_c\n"
        updated = http.put(f"/v1/dashboards/{board}", content=yaml_body, headers={"content-type": "application/yaml"})
        assert updated.status_code == 200 and updated.json()["version"] == 2
        got = http.get(f"/v1/dashboards/{board}").json()
        assert (got["id"], got["title"], got["widgets"][0]["agg"]) == (board, "Ops 2", "max:temp_c")
        assert got["created_at"].endswith("Z") and got["updated_at"] >= got["created_at"]
        assert board in [d["id"] for d in http.get("/v1/dashboards").json()["dashboards"]]
        assert http.delete(f"/v1/dashboards/{board}").status_code == 204
        missing = http.get(f"/v1/dashboards/{board}")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"
        assert http.delete(f"/v1/dashboards/{board}").status_code == 404


def test_create_only_never_overwrites(platform, pipeline_id) -> None:
    """[ext] `If-None-Match: *`: 201 when the id is free, 412 (and nothing changed) when taken."""
    from dash_ray.errors import PreconditionFailedError

    board = f"c-{uuid.uuid4().hex[:6]}"
    body = {"title": "First", "widgets": [{"kind": "stat", "pipeline": pipeline_id, "agg": "count"}]}
    with platform.http() as http:
        assert http.put(f"/v1/dashboards/{board}", json=body, headers={"if-none-match": "*"}).status_code == 201
        taken = http.put(f"/v1/dashboards/{board}", json={**body, "title": "Second"}, headers={"if-none-match": "*"})
        assert taken.status_code == 412
        assert taken.json()["error"]["type"] == "PreconditionFailedError" and taken.json()["error"]["where"] == "id"
    with pytest.raises(PreconditionFailedError):
        platform.client.put_dashboard({"id": board, **body, "title": "Third"}, create_only=True)
    assert platform.client.dashboard(board).title == "First" and platform.client.dashboard(board).version == 1


def test_bad_dashboards_are_a_422_with_paths(platform, pipeline_id) -> None:
    with platform.http() as http:
        bad = http.put("/v1/dashboards/bad",
                       json={"widgets": [{"kind": "bar", "pipeline": pipeline_id, "agg": "count"}]})
        assert bad.status_code == 422
        assert {p["path"] for p in bad.json()["error"]["problems"]} == {"title", "widgets.0"}
        unknown = http.put("/v1/dashboards/bad", json={"title": "x", "widgets": [
            {"kind": "line", "pipeline": pipeline_id, "fields": ["humidity"]},
            {"kind": "table", "pipeline": "no-such-pipeline"}]})
        assert unknown.status_code == 422
        assert [p["path"] for p in unknown.json()["error"]["problems"]] == ["widgets.0.fields.0", "widgets.1.pipeline"]
        other = http.put("/v1/dashboards/bad", json={"id": "other", "title": "x"})
        assert other.status_code == 422 and other.json()["error"]["where"] == "id"
        not_yaml = http.put("/v1/dashboards/bad", content="a: *b", headers={"content-type": "text/yaml"})
        assert not_yaml.status_code == 400
        assert http.get("/v1/dashboards/bad").status_code == 404


def test_scopes(platform, pipeline_id) -> None:
    board = f"s-{uuid.uuid4().hex[:6]}"
    platform.client.put_dashboard({"id": board, "title": "Seen", "widgets": []})
    read = platform.client.create_token("read", name="dash-read")
    try:
        with platform.http(read["token"]) as http:
            assert http.get(f"/v1/dashboards/{board}").status_code == 200
            assert http.get("/v1/dashboards").status_code == 200
            assert http.get("/v1/whoami").json() == {"scope": "read", "auth": "bearer"}
            refused = http.put(f"/v1/dashboards/{board}", json={"title": "Changed"})
            assert refused.status_code == 403 and refused.json()["error"]["type"] == "ForbiddenError"
            assert http.delete(f"/v1/dashboards/{board}").status_code == 403
        with platform.http("dash_nope") as http:
            assert http.get("/v1/dashboards").status_code == 401
    finally:
        platform.client.revoke_token(read["id"])
    with platform.http() as http:
        assert http.get("/v1/whoami").json() == {"scope": "admin", "auth": "bearer"}


def test_the_sdk_and_deploy_of_a_dashboard_file(platform, pipeline_id, tmp_path) -> None:
    client = platform.client
    board = f"sdk-{uuid.uuid4().hex[:6]}"
    made = client.put_dashboard({"id": board, "title": "SDK", "widgets": [
        {"kind": "stat", "pipeline": pipeline_id, "agg": "count"}]})
    assert isinstance(made, Dashboard) and (made.id, made.version) == (board, 1)
    assert client.dashboard(board).widgets[0]["agg"] == "count"
    path = tmp_path / "board.yaml"
    path.write_text(f"kind: dashboard\nid: {board}\ntitle: From a file\nwidgets:\n"
                    f"  - {{kind: table, pipeline: {pipeline_id}, limit: 5}}\n")
    deployed = client.deploy(path)
    assert isinstance(deployed, Dashboard) and (deployed.title, deployed.version) == ("From a file", 2)
    by_key = client.deploy({"id": board, "title": "By key", "widgets": []})
    assert isinstance(by_key, Dashboard) and by_key.version == 3
    assert board in [d.id for d in client.dashboards()]
    with pytest.raises(SpecError) as caught:
        client.put_dashboard({"id": board, "title": "x", "widgets": [{"kind": "stat", "pipeline": pipeline_id}]})
    assert caught.value.where == "widgets.0"
    client.delete_dashboard(board)
    with pytest.raises(NotFoundError):
        client.dashboard(board)
    read = client.create_token("read", name="sdk-read")
    try:
        from dash_ray.client import Client

        with Client(platform.url, token=read["token"]) as reader, pytest.raises(ForbiddenError):
            reader.put_dashboard({"id": board, "title": "x"})
    finally:
        client.revoke_token(read["id"])
