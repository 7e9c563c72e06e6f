"""Every problem of a pipeline spec in one answer: its shape, its mapping (paths, expressions,
rules), its rollups and its silver store, found together rather than one round at a time (a
bad `id` must not hide a broken expression); and a spec's admission on a platform
(`admit_spec`), the one check before a pipeline runs, at deploy and again at each start.

The shape is checked first (`parse_spec`); when it has problems, the spec is checked again
with each broken part left out (a broken field keeps its name and, when valid, its type, so
the expressions using it are still checked), and the later checks run on that. A problem the
later checks find under a path already reported, or about a field whose type is broken, is a
consequence and is left out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import ValidationError

from dash_ray.errors import Problem, SpecError
from dash_ray.lake_roots import LakeRoots
from dash_ray.mapping import compile_mapping
from dash_ray.silver.choice import silver_problems
from dash_ray.silver.evolution import evolution_problems
from dash_ray.silver.rollup import rollup_problems
from dash_ray.silver.schema import schema_problems
from dash_ray.sinks.select import sink_problems
from dash_ray.sources.locate import path_problems
from dash_ray.spec import FieldType, PipelineSpec, parse_spec

__all__ = ["SpecCheck", "admit_spec", "check_spec"]

_TYPES = frozenset(get_args(FieldType))
_PLACEHOLDER_ID = "spec-being-checked"


@dataclass
class SpecCheck:
    """What a check found. `spec`: the spec as given when it has no problem, else the spec
    with each broken part left out (None when even that does not hold); `problems`: every
    problem, shape first."""

    spec: PipelineSpec | None
    problems: list[Problem] = field(default_factory=list)
    _reported: tuple[str, ...] = ()
    _broken_fields: frozenset[str] = frozenset()

    def add(self, found: Iterable[Problem]) -> None:
        """Add what a later check found, leaving out the consequences of shape problems."""
        for problem in found:
            if any(problem.path == p or problem.path.startswith(p + ".") for p in self._reported):
                continue
            if any(f"'{name}'" in problem.message for name in self._broken_fields):
                continue
            self.problems.append(problem)

    def valid(self) -> PipelineSpec:
        """The spec; SpecError listing every problem when there is any."""
        if self.problems or self.spec is None:
            raise SpecError(problems=self.problems or [Problem("(spec)", "not a pipeline spec")])
        return self.spec


def check_spec(data: Any, *, has_database: bool = True) -> SpecCheck:
    """Check plain data as a pipeline spec on a platform with (`has_database`) or without a
    PostgreSQL database. Changing an existing pipeline's types is checked by the
    supervisor (`silver.evolution`), which knows the spec it replaces."""
    if not isinstance(data, dict):
        return SpecCheck(None, [Problem("(spec)", "a pipeline spec must be a JSON/YAML object")])
    try:
        checked = SpecCheck(parse_spec(data))
    except SpecError as exc:
        checked = _without_broken_parts(data, list(exc.problems))
    spec = checked.spec
    if spec is not None:
        try:
            compile_mapping(spec.mapping)
        except SpecError as exc:
            checked.add(exc.problems)
        checked.add(schema_problems(spec))
        checked.add(path_problems(spec.source))
        checked.add(rollup_problems(spec))
        checked.add(silver_problems(spec, has_dsn=has_database))
        checked.add(sink_problems(spec))
    return checked


def admit_spec(data: Any, *, has_database: bool, current: PipelineSpec | None = None,
               lake_roots: LakeRoots | None = None, other_lakes: Iterable[str] = ()) -> PipelineSpec:
    """The spec `data` describes, when a platform with (`has_database`) or without a PostgreSQL
    database may run it; SpecError naming every problem at once. Beyond `check_spec`: in
    place of `current` (the spec it replaces) its fields' types may only widen
    (`silver.evolution`), and a lake of its own must lie under `lake_roots`, apart from
    `other_lakes` (the other pipelines' own lakes). The supervisor admits a spec at deploy;
    a pipeline admits its spec again at each start, on the platform as it is then."""
    checked = check_spec(data, has_database=has_database)
    spec = checked.spec
    if spec is None or spec.id != data.get("id"):
        # The id itself is broken: every other problem is in `checked` already.
        raise SpecError(problems=checked.problems or [Problem("id", "not a pipeline id")])
    if current is not None:
        checked.add(evolution_problems(current, spec))
    if lake_roots is not None:
        try:
            lake_roots.check(spec.storage.lake, others=other_lakes)
        except SpecError as exc:
            checked.add(exc.problems)
    return checked.valid()


def _without_broken_parts(data: dict[str, Any], problems: list[Problem]) -> SpecCheck:
    data = copy.deepcopy(data)
    mapping = data.get("mapping") if isinstance(data.get("mapping"), dict) else None
    fields = mapping.get("fields") if mapping is not None and isinstance(mapping.get("fields"), dict) else None
    broken: set[str] = set()
    rules: set[int] = set()
    for problem in problems:
        path = problem.path
        if path == "id":
            data["id"] = _PLACEHOLDER_ID
        elif fields is not None and path.startswith("mapping.fields."):
            name = max((n for n in fields if path == f"mapping.fields.{n}" or path.startswith(f"mapping.fields.{n}.")),
                       key=len, default=None)
            if name is None:
                data.pop("mapping", None)
            elif isinstance(fields[name], dict) and fields[name].get("type", "string") in _TYPES:
                fields[name] = {"path": "$", "type": fields[name].get("type", "string")}
            else:
                broken.add(name)
                fields.pop(name)
        elif mapping is not None and path.startswith("mapping.validate."):
            index = path.split(".")[2]
            rules.update([int(index)] if index.isdigit() else range(len(mapping.get("validate") or ())))
        elif mapping is not None and path.startswith("mapping."):
            mapping.pop(path.split(".")[1], None)
        else:
            data.pop(path.split(".")[0], None)
    if mapping is not None and rules and isinstance(mapping.get("validate"), list):
        mapping["validate"] = [rule for i, rule in enumerate(mapping["validate"]) if i not in rules]
    try:
        spec: PipelineSpec | None = PipelineSpec.model_validate(data)
    except (ValidationError, TypeError):
        spec = None
    return SpecCheck(spec, problems, tuple(p.path for p in problems), frozenset(broken))
