"""Dashboards: a title and a list of widgets over pipelines' records, as frozen pydantic
models, every problem reported with its field path (a 422 like a bad pipeline spec).

A widget reads one pipeline over a time `window` ("15m": the last 15 minutes):
- `line`: each of `fields` (numeric) over time, or with `agg` one aggregate per `bucket`;
  `by` draws one series per value of that field;
- `stat`: one number, `agg` over the window (e.g. `avg:temp_c`, `count`, `last:temp_c`);
- `table`: the newest `limit` records, columns `fields` (default: all);
- `bar`: `agg` per value of `by` over the window.

The page shows every widget over one time range (its picker, in the URL); a widget's `window`
is the range the dashboard opens with (the longest of them). `unit` ("°C", "req/s") is shown
on a widget's axis and numbers. `w` is a widget's width in columns of a 12-column grid (1-12;
default 4, a table 12) and `h` its height in rows of 100 px (1-8; default: as tall as its
content, a chart 220 px); on a narrow screen widgets stack. A dashboard's `variables` (e.g.
`device`) each pick values of a string or int field from the data; the page filters every
widget over a pipeline holding that field by the values picked (the query API's `filter`).

`agg` is written as the query API writes it: `<fn>:<field>` with fn in
avg min max sum count first last, or `count` alone. A YAML or JSON document is a dashboard
(not a pipeline spec) when it says `kind: dashboard` at the top, or has a `widgets` key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from dash_ray.errors import Problem, SpecError
from dash_ray.spec import FIELD_NAME_PATTERN, PIPELINE_ID_PATTERN, PipelineSpec

__all__ = [
    "AGG_FUNCTIONS",
    "Variable",
    "DEMO_DASHBOARD",
    "Dashboard",
    "Widget",
    "check_dashboard",
    "dashboard_problems",
    "is_dashboard",
    "parse_dashboard",
    "window_seconds",
]

AGG_FUNCTIONS = ("avg", "min", "max", "sum", "count", "first", "last")
_NUMERIC_FUNCTIONS = frozenset({"avg", "sum", "min", "max"})
_NUMERIC_TYPES = frozenset({"int", "double"})
_FILTERABLE = frozenset({"string", "int"})
_AGG = re.compile(rf"^(?:count|(?:{'|'.join(AGG_FUNCTIONS)}):[A-Za-z_][A-Za-z0-9_]{{0,62}})$")
_UNIT = re.compile(r"^[^\x00-\x1f\x7f<>]{1,16}$")
_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_MAX_WINDOW_S = 90 * 86_400
# Columns every record has besides its mapped fields.
_BUILT_IN = frozenset({"seq", "time"})

# The dashboard `dash-ray up --demo` opens with, over the demo pipeline (sources/demo.py).
DEMO_DASHBOARD: dict[str, Any] = {
    "id": "demo",
    "title": "Demo sensors",
    "description": "The simulated sensors of the demo pipeline, live.",
    "widgets": [
        {"kind": "line", "title": "Temperature by device", "pipeline": "demo", "fields": ["temp_c"],
         "by": "device", "window": "15m", "unit": "°C"},
        {"kind": "stat", "title": "Average temperature", "pipeline": "demo", "agg": "avg:temp_c", "window": "5m",
         "unit": "°C"},
        {"kind": "stat", "title": "Readings", "pipeline": "demo", "agg": "count", "window": "15m"},
        {"kind": "bar", "title": "Humidity by site", "pipeline": "demo", "agg": "avg:humidity", "by": "site",
         "window": "15m", "unit": "%"},
        {"kind": "line", "title": "Max temperature", "pipeline": "demo", "agg": "max:temp_c",
         "window": "15m", "unit": "°C"},
        {"kind": "table", "title": "Newest readings", "pipeline": "demo",
         "fields": ["device", "site", "temp_c", "humidity", "status"], "limit": 10},
    ],
    "variables": [{"name": "site", "pipeline": "demo", "field": "site"}],
}

DashboardId = Annotated[str, StringConstraints(pattern=PIPELINE_ID_PATTERN)]
FieldName = Annotated[str, StringConstraints(pattern=FIELD_NAME_PATTERN)]
WidgetKind = Literal["line", "stat", "table", "bar"]


def window_seconds(window: str) -> int:
    """Seconds in a window or bucket like `15m`; ValueError when it is not one."""
    match = _WINDOW.match(window)
    if match is None:
        raise ValueError(f"{window!r} is not a duration like 30s, 15m, 6h or 7d")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Widget(_Model):
    """One panel of a dashboard; see the module docstring for what each kind needs."""

    kind: WidgetKind
    pipeline: DashboardId
    title: str | None = Field(default=None, max_length=200)
    fields: tuple[FieldName, ...] = Field(default=(), max_length=20)
    agg: str | None = None
    by: FieldName | None = None
    window: str = "15m"
    bucket: str | None = None
    limit: int = Field(default=20, ge=1, le=1000)
    unit: str | None = Field(default=None, max_length=16)
    w: int | None = Field(default=None, ge=1, le=12, strict=True)
    h: int | None = Field(default=None, ge=1, le=8, strict=True)

    @model_validator(mode="after")
    def _shape(self) -> Widget:
        if self.unit is not None and not _UNIT.match(self.unit):
            raise ValueError(f"unit {self.unit[:20]!r} must be plain text like °C, % or req/s "
                             "(no < > or control characters)")
        if self.agg is not None and not _AGG.match(self.agg):
            raise ValueError(f"agg {self.agg!r} must be <fn>:<field> with fn in {', '.join(AGG_FUNCTIONS)}, "
                             "or count")
        for name, value in (("window", self.window), ("bucket", self.bucket)):
            if value is not None and not 1 <= _seconds(value) <= _MAX_WINDOW_S:
                raise ValueError(f"{name} {value!r} must be a duration like 30s, 15m, 6h or 7d, at most 90d")
        if self.kind == "line" and not self.fields and self.agg is None:
            raise ValueError("a line widget needs `fields` (numeric) or an `agg`")
        if self.kind in ("stat", "bar") and self.agg is None:
            raise ValueError(f"a {self.kind} widget needs an `agg` like avg:temp_c or count")
        if self.kind == "bar" and self.by is None:
            raise ValueError("a bar widget needs `by`: the field whose values are the bars")
        if self.kind == "stat" and self.by is not None:
            raise ValueError("a stat widget shows one number; `by` is for line and bar widgets")
        return self

    @property
    def agg_field(self) -> str | None:
        """The field `agg` reads (None for `count`)."""
        return None if self.agg is None or ":" not in self.agg else self.agg.split(":", 1)[1]


def _seconds(value: str) -> int:
    try:
        return window_seconds(value)
    except ValueError:
        return 0


class Variable(_Model):
    """A dashboard variable: values of `field` of `pipeline` (a string or int field), picked on
    the page, filter every widget over a pipeline that has the field."""

    name: FieldName
    pipeline: DashboardId
    field: FieldName
    label: str | None = Field(default=None, max_length=60)


class Dashboard(_Model):
    """A dashboard as stored in the catalog and served by `/v1/dashboards/{id}`."""

    kind: Literal["dashboard"] = "dashboard"
    id: DashboardId
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    widgets: tuple[Widget, ...] = Field(default=(), max_length=50)
    variables: tuple[Variable, ...] = Field(default=(), max_length=8)

    @model_validator(mode="after")
    def _unique_variables(self) -> Dashboard:
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError("each variable needs its own name")
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """The dashboard as JSON-ready data (no `kind`: the route says what it is)."""
        return self.model_dump(mode="json", exclude={"kind"}, exclude_none=True)


def is_dashboard(data: Any) -> bool:
    """Whether a loaded YAML/JSON document is a dashboard rather than a pipeline spec."""
    return isinstance(data, Mapping) and (data.get("kind") == "dashboard" or "widgets" in data)


def parse_dashboard(data: Any) -> Dashboard:
    """Validate plain data as a dashboard; SpecError naming every problem's field path."""
    if not isinstance(data, Mapping):
        raise SpecError("invalid dashboard: it must be a JSON/YAML object",
                        problems=[Problem("(dashboard)", "a dashboard must be a JSON/YAML object")])
    try:
        return Dashboard.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            path = ".".join(str(part) for part in err["loc"])
            problems.append(Problem(path or "(dashboard)", err["msg"].removeprefix("Value error, ")))
        raise SpecError(_message(problems), problems=problems) from None


def dashboard_problems(dashboard: Dashboard, specs: Mapping[str, PipelineSpec]) -> list[Problem]:
    """What is wrong with the widgets and variables given the pipelines there are: an unknown
    pipeline, a field its mapping does not have, a non-numeric field to plot or average, a
    variable over a field that is not a string or int."""
    problems: list[Problem] = []
    for index, widget in enumerate(dashboard.widgets):
        at = f"widgets.{index}"
        spec = specs.get(widget.pipeline)
        if spec is None:
            problems.append(Problem(f"{at}.pipeline", f"no pipeline {widget.pipeline!r}; deploy it first"))
            continue
        types = {name: field.type for name, field in spec.mapping.fields.items()}
        types.setdefault("time", "timestamp")
        types["seq"] = "int"
        name: str | None
        for n, name in enumerate(widget.fields):
            if name not in types:
                problems.append(Problem(f"{at}.fields.{n}", _unknown(name, widget.pipeline, types)))
            elif widget.kind == "line" and types[name] not in _NUMERIC_TYPES:
                problems.append(Problem(f"{at}.fields.{n}", f"{name!r} is {types[name]}; a line plots int or double"))
        name = widget.agg_field
        if name is not None:
            fn = widget.agg.split(":", 1)[0]  # type: ignore[union-attr]
            if name not in types:
                problems.append(Problem(f"{at}.agg", _unknown(name, widget.pipeline, types)))
            elif fn in _NUMERIC_FUNCTIONS and types[name] not in _NUMERIC_TYPES:
                problems.append(Problem(f"{at}.agg", f"{fn} needs an int or double field; {name!r} is {types[name]}"))
        if widget.by is not None and widget.by not in types:
            problems.append(Problem(f"{at}.by", _unknown(widget.by, widget.pipeline, types)))
    return problems + _variable_problems(dashboard, specs)


def _variable_problems(dashboard: Dashboard, specs: Mapping[str, PipelineSpec]) -> list[Problem]:
    """A variable over a pipeline or field there is not, or over a field it cannot filter."""
    problems: list[Problem] = []
    for index, variable in enumerate(dashboard.variables):
        at = f"variables.{index}"
        spec = specs.get(variable.pipeline)
        if spec is None:
            problems.append(Problem(f"{at}.pipeline", f"no pipeline {variable.pipeline!r}; deploy it first"))
            continue
        types = {name: field.type for name, field in spec.mapping.fields.items()}
        if variable.field not in types:
            problems.append(Problem(f"{at}.field", _unknown(variable.field, variable.pipeline, types)))
        elif types[variable.field] not in _FILTERABLE:
            problems.append(Problem(f"{at}.field", f"{variable.field!r} is {types[variable.field]}; a variable "
                                                   "takes a string or int field"))
    return problems


def check_dashboard(dashboard: Dashboard, specs: Mapping[str, PipelineSpec]) -> None:
    """Raise SpecError (422) when `dashboard_problems` finds anything."""
    problems = dashboard_problems(dashboard, specs)
    if problems:
        raise SpecError(_message(problems), problems=problems)


def _unknown(name: str, pipeline: str, types: Mapping[str, str]) -> str:
    known = ", ".join(sorted(n for n in types if n not in _BUILT_IN))
    return f"pipeline {pipeline!r} has no field {name!r} (it has {known})"


def _message(problems: list[Problem]) -> str:
    return "invalid dashboard: " + "; ".join(str(p) for p in problems)
