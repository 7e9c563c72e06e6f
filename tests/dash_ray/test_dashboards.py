"""The dashboard model: what each widget kind needs, `agg` and window syntax, every problem
with its path, and the checks against the pipelines there are."""

from __future__ import annotations

import pytest

from dash_ray.dashboards import check_dashboard, dashboard_problems, is_dashboard, parse_dashboard, window_seconds
from dash_ray.errors import SpecError
from dash_ray.spec import parse_spec

WEATHER = parse_spec({"id": "weather", "mapping": {"fields": {
    "time": {"path": "$.ts", "type": "timestamp"},
    "device": {"path": "$.device", "type": "string"},
    "temp_c": {"path": "$.temp", "type": "double"}}}})


def board(*widgets: dict, **extra) -> dict:
    return {"id": "ops", "title": "Ops", "widgets": list(widgets), **extra}


def problems_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_dashboard(data)
    assert caught.value.status == 422
    return [(p.path, p.message) for p in caught.value.problems]


def test_a_dashboard_of_every_kind_parses() -> None:
    dashboard = parse_dashboard(board(
        {"kind": "line", "pipeline": "weather", "fields": ["temp_c"], "by": "device", "window": "1h"},
        {"kind": "line", "pipeline": "weather", "agg": "max:temp_c", "bucket": "1m"},
        {"kind": "stat", "pipeline": "weather", "agg": "count", "window": "30s"},
        {"kind": "table", "pipeline": "weather", "limit": 5},
        {"kind": "bar", "pipeline": "weather", "agg": "avg:temp_c", "by": "device"},
        kind="dashboard"))
    assert [w.kind for w in dashboard.widgets] == ["line", "line", "stat", "table", "bar"]
    assert dashboard.widgets[0].window == "1h" and dashboard.widgets[2].window == "30s"
    assert dashboard.widgets[4].agg_field == "temp_c" and dashboard.widgets[2].agg_field is None
    assert "kind" not in dashboard.to_json_dict()
    assert dashboard_problems(dashboard, {"weather": WEATHER}) == []


@pytest.mark.parametrize(("widget", "path", "words"), [
    ({"kind": "pie", "pipeline": "weather"}, "widgets.0.kind", "line"),
    ({"kind": "stat", "pipeline": "weather"}, "widgets.0", "needs an `agg`"),
    ({"kind": "stat", "pipeline": "weather", "agg": "median:temp_c"}, "widgets.0", "avg, min"),
    ({"kind": "stat", "pipeline": "weather", "agg": "avg"}, "widgets.0", "<fn>:<field>"),
    ({"kind": "line", "pipeline": "weather"}, "widgets.0", "needs `fields`"),
    ({"kind": "bar", "pipeline": "weather", "agg": "count"}, "widgets.0", "needs `by`"),
    ({"kind": "table", "pipeline": "weather", "window": "15 minutes"}, "widgets.0", "duration"),
    ({"kind": "table", "pipeline": "weather", "window": "365d"}, "widgets.0", "at most 90d"),
    ({"kind": "table", "pipeline": "Weather!"}, "widgets.0.pipeline", "pattern"),
    ({"kind": "table", "pipeline": "weather", "colour": "red"}, "widgets.0.colour", "Extra"),
    ({"kind": "stat", "pipeline": "weather", "agg": "count", "unit": "<b>°C"}, "widgets.0", "plain text"),
    ({"kind": "stat", "pipeline": "weather", "agg": "count", "unit": "a" * 17}, "widgets.0.unit", "16"),
    ({"kind": "table", "pipeline": "weather", "w": 0}, "widgets.0.w", "greater than or equal to 1"),
    ({"kind": "table", "pipeline": "weather", "w": 13}, "widgets.0.w", "less than or equal to 12"),
    ({"kind": "table", "pipeline": "weather", "w": "6"}, "widgets.0.w", "valid integer"),
    ({"kind": "table", "pipeline": "weather", "w": 2.5}, "widgets.0.w", "valid integer"),
    ({"kind": "table", "pipeline": "weather", "h": 9}, "widgets.0.h", "less than or equal to 8"),
    ({"kind": "table", "pipeline": "weather", "h": True}, "widgets.0.h", "valid integer"),
])
def test_a_bad_widget_is_a_422_with_its_path(widget: dict, path: str, words: str) -> None:
    [(where, message)] = problems_of(board({"kind": "table", "pipeline": "weather"}, widget))
    assert where == path.replace("widgets.0", "widgets.1") and words in message


def test_widget_sizes_are_kept_and_default_to_none() -> None:
    sized = parse_dashboard(board({"kind": "stat", "pipeline": "weather", "agg": "count", "w": 6, "h": 2},
                                  {"kind": "table", "pipeline": "weather", "w": 12, "h": 8}))
    assert [(w.w, w.h) for w in sized.widgets] == [(6, 2), (12, 8)]
    assert sized.to_json_dict()["widgets"][0] == {"kind": "stat", "pipeline": "weather", "agg": "count",
                                                   "fields": [], "window": "15m", "limit": 20, "w": 6, "h": 2}
    # A dashboard without sizes keeps its look: nothing is added to what it says.
    plain = parse_dashboard(board({"kind": "table", "pipeline": "weather"}))
    assert (plain.widgets[0].w, plain.widgets[0].h) == (None, None)
    assert "w" not in plain.to_json_dict()["widgets"][0] and "h" not in plain.to_json_dict()["widgets"][0]


def test_every_problem_is_reported_and_the_title_is_required() -> None:
    found = problems_of({"id": "Bad Id", "widgets": [{"kind": "stat", "pipeline": "weather"}]})
    assert {path for path, _ in found} == {"id", "title", "widgets.0"}


def test_widgets_are_checked_against_the_pipelines() -> None:
    dashboard = parse_dashboard(board(
        {"kind": "line", "pipeline": "weather", "fields": ["device", "humidity"]},
        {"kind": "stat", "pipeline": "weather", "agg": "avg:device"},
        {"kind": "bar", "pipeline": "weather", "agg": "count", "by": "site"},
        {"kind": "table", "pipeline": "rain"}))
    found = {p.path: p.message for p in dashboard_problems(dashboard, {"weather": WEATHER})}
    assert set(found) == {"widgets.0.fields.0", "widgets.0.fields.1", "widgets.1.agg", "widgets.2.by",
                          "widgets.3.pipeline"}
    assert "a line plots int or double" in found["widgets.0.fields.0"]
    assert "no field 'humidity'" in found["widgets.0.fields.1"] and "temp_c" in found["widgets.0.fields.1"]
    assert "avg needs an int or double" in found["widgets.1.agg"]
    with pytest.raises(SpecError) as caught:
        check_dashboard(dashboard, {"weather": WEATHER})
    assert caught.value.where == "widgets.0.fields.0" and caught.value.message.startswith("invalid dashboard")


def test_units_and_variables() -> None:
    dashboard = parse_dashboard(board({"kind": "stat", "pipeline": "weather", "agg": "avg:temp_c", "unit": "°C"},
                                      variables=[{"name": "device", "pipeline": "weather", "field": "device"}]))
    assert dashboard.widgets[0].unit == "°C" and dashboard.variables[0].field == "device"
    assert dashboard.to_json_dict()["variables"] == [{"name": "device", "pipeline": "weather", "field": "device"}]
    assert dashboard_problems(dashboard, {"weather": WEATHER}) == []
    bad = parse_dashboard(board(variables=[{"name": "t", "pipeline": "weather", "field": "temp_c"},
                                           {"name": "s", "pipeline": "weather", "field": "site"},
                                           {"name": "r", "pipeline": "rain", "field": "device"}]))
    found = {p.path: p.message for p in dashboard_problems(bad, {"weather": WEATHER})}
    assert set(found) == {"variables.0.field", "variables.1.field", "variables.2.pipeline"}
    assert "string or int" in found["variables.0.field"]
    assert problems_of(board(variables=[{"name": "d", "pipeline": "weather", "field": "device"}] * 2)) == [
        ("(dashboard)", "each variable needs its own name")]


def test_which_documents_are_dashboards() -> None:
    assert is_dashboard({"kind": "dashboard", "id": "x"})
    assert is_dashboard({"id": "x", "widgets": []})
    assert not is_dashboard({"id": "weather", "source": {"kind": "push"}})
    assert not is_dashboard(["kind", "dashboard"])


def test_windows() -> None:
    assert [window_seconds(w) for w in ("30s", "15m", "6h", "7d")] == [30, 900, 21_600, 604_800]
    with pytest.raises(ValueError, match="duration"):
        window_seconds("0m")


def test_the_example_and_the_demo_dashboards_fit_their_pipelines() -> None:
    from pathlib import Path

    import yaml

    from dash_ray.dashboards import DEMO_DASHBOARD
    from dash_ray.sources.demo import DEMO_SPEC
    from dash_ray.spec import load_spec

    configs = Path(__file__).resolve().parents[2] / "configs"
    example = yaml.safe_load((configs / "dashboard.example.yaml").read_text())
    assert is_dashboard(example)
    check_dashboard(parse_dashboard(example), {"weather": load_spec(configs / "weather.yaml")})
    check_dashboard(parse_dashboard(DEMO_DASHBOARD), {"demo": parse_spec(DEMO_SPEC)})
    assert {w.kind for w in parse_dashboard(DEMO_DASHBOARD).widgets} == {"line", "stat", "table", "bar"}
