"""Which mapped records a sink takes (`when`, compiled with the mapping's expression engine:
`dash_ray.mapping.expressions`, type-checked against the mapped fields) and the spec checks
of the sinks at deploy (`sink_problems`): `when`, the templates, the group fields."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pyarrow as pa

from dash_ray.errors import Problem
from dash_ray.mapping.compute import compile_evaluator
from dash_ray.mapping.expressions import ExpressionError, parse_expression
from dash_ray.mapping.typecheck import check_expression
from dash_ray.mapping.values import Evaluator
from dash_ray.sinks.template import Template, TemplateError
from dash_ray.spec import PipelineSpec
from dash_ray.spec.sinks import EmailSink, SlackSink

__all__ = ["Selector", "mapped_types", "sink_problems"]


def mapped_types(spec: PipelineSpec) -> dict[str, str]:
    """The columns of a mapped row and their types: `seq`, `time`, the fields, `extra`."""
    types = {"seq": "int", "time": "timestamp"}
    types.update({name: f.type for name, f in spec.mapping.fields.items()})
    if spec.mapping.keep_extra or not spec.mapping.fields:
        types["extra"] = "json"
    return types


class Selector:
    """A compiled `when`: `select(rows)` keeps the rows it is true for (null counts as false)."""

    def __init__(self, evaluate: Evaluator | None) -> None:
        self._evaluate = evaluate

    @classmethod
    def compile(cls, when: str | None, types: dict[str, str], where: str = "when") -> Selector:
        """SpecError-ready problems are raised as ValueError(Problem)."""
        if when is None:
            return cls(None)
        try:
            tree = check_expression(parse_expression(when), types)
        except ExpressionError as exc:
            raise _Invalid(Problem(where, exc.message, exc.position)) from None
        if tree.type == "null":
            return cls(lambda columns, n: pa.nulls(n, pa.bool_()))
        if tree.type != "bool":
            raise _Invalid(Problem(where, f"'when' must be a boolean expression, not {tree.type}", 1))
        return cls(compile_evaluator(tree))

    def select(self, rows: pa.Table) -> pa.Table:
        if self._evaluate is None or not rows.num_rows:
            return rows
        return rows.filter(self._evaluate(_Columns(rows), rows.num_rows), null_selection_behavior="drop")


class _Columns(Mapping[str, pa.Array]):
    """A table's columns as arrays, each made when the expression first reads it."""

    def __init__(self, rows: pa.Table) -> None:
        self._rows = rows
        self._made: dict[str, pa.Array] = {}

    def __getitem__(self, name: str) -> pa.Array:
        if name not in self._made:
            column = self._rows.column(name)
            self._made[name] = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows.column_names)

    def __len__(self) -> int:
        return int(self._rows.num_columns)


class _Invalid(ValueError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def sink_problems(spec: PipelineSpec) -> list[Problem]:
    """Every problem of the spec's sinks that its shape does not show: a `when` that does not
    parse or is not boolean over the mapped fields, a template that is not plain `{field}`
    text or names a field the rows lack, a `group_by` field the rows lack."""
    types = mapped_types(spec)
    problems: list[Problem] = []
    for i, sink in enumerate(spec.sinks):
        where = f"sinks.{i}"
        try:
            Selector.compile(sink.when, types, f"{where}.when")
        except _Invalid as exc:
            problems.append(exc.problem)
        texts = {"template": sink.template}
        if isinstance(sink, SlackSink):
            texts["title"] = sink.title
        if isinstance(sink, EmailSink):
            texts["subject"] = sink.subject
        for key, text in texts.items():
            if text is None:
                continue
            try:
                unknown = Template.parse(text).unknown(types)
            except TemplateError as exc:
                problems.append(Problem(f"{where}.{key}", str(exc)))
                continue
            if unknown:
                problems.append(Problem(f"{where}.{key}", f"no mapped field {unknown[0]!r} to fill in"))
        if isinstance(sink, (SlackSink, EmailSink)):
            for name in sink.group_by:
                if name not in types:
                    problems.append(Problem(f"{where}.group_by", f"no mapped field {name!r} to group by"))
    return problems
