"""Reading a spec: from plain data (`parse_spec`), a file or text (`load_spec`,
`load_document`), every problem reported with its field path and a message a user reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dash_ray.errors import Problem, SpecError
from dash_ray.spec.base import FIELD_NAME_PATTERN, PIPELINE_ID_PATTERN, SECRET_NAME_PATTERN
from dash_ray.spec.model import PipelineSpec
from dash_ray.spec.sinks import SINK_KINDS
from dash_ray.spec.sources import SOURCE_KINDS

__all__ = ["load_document", "load_spec", "parse_spec", "yaml_error_text"]

_PATTERNS = {
    PIPELINE_ID_PATTERN: "1 to 63 characters of a-z, 0-9 and '-', starting with a letter",
    SECRET_NAME_PATTERN: "a secret name is 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-', "
                         "starting with a letter or digit",
    FIELD_NAME_PATTERN: "a field name is 1 to 63 characters of A-Z, a-z, 0-9 and '_', not starting with a digit",
}


def _message(err: Any, loc: list[str]) -> tuple[list[str], str]:
    """The path and message a user reads for one pydantic error."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "union_tag_invalid" and loc == ["source"]:
        tag, kinds = ctx.get("tag"), ", ".join(SOURCE_KINDS)
        return ["source", "kind"], f"unknown source kind {str(tag)[:40]!r}; give one of {kinds}"
    if kind == "union_tag_not_found" and loc == ["source"]:
        return ["source", "kind"], f"missing; give one of {', '.join(SOURCE_KINDS)}"
    if kind in ("union_tag_invalid", "union_tag_not_found") and len(loc) == 2 and loc[0] == "sinks":
        kinds = ", ".join(SINK_KINDS)
        tag = ctx.get("tag")
        what = f"unknown sink kind {str(tag)[:40]!r}; give" if tag is not None else "missing; give"
        return [*loc, "kind"], f"{what} one of {kinds}"
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS:
        return loc, _PATTERNS[ctx["pattern"]]
    return loc, err["msg"].removeprefix("Value error, ")


def _problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        # pydantic marks a dict key's own error with a trailing "[key]" element.
        loc = [str(part) for part in err["loc"] if part != "[key]"]
        # Discriminated unions put the tag in the path ("source.webhook.verify"); drop it.
        if len(loc) >= 2 and loc[0] == "source" and loc[1] in SOURCE_KINDS:
            del loc[1]
        if len(loc) >= 3 and loc[0] == "sinks" and loc[2] in SINK_KINDS:
            del loc[2]
        loc, message = _message(err, loc)
        problems.append(Problem(path=".".join(loc) or "(spec)", message=message))
    return problems


def parse_spec(data: Any) -> PipelineSpec:
    """Validate plain data as a spec; raise SpecError naming every problem's field path.

    Only the spec's shape is checked here; mapping paths and expressions are compiled (and
    their problems reported the same way) by `dash_ray.mapping.compile_mapping`."""
    if not isinstance(data, dict):
        raise SpecError(problems=[Problem("(spec)", "a pipeline spec must be a JSON/YAML object")])
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems=_problems(exc)) from None


def _is_path(source: str | Path) -> bool:
    return isinstance(source, Path) or ("\n" not in source and source.endswith((".yaml", ".yml", ".json")))


def load_document(source: str | Path) -> Any:
    """The plain data of a `.yaml`/`.yml`/`.json` file path, or of YAML/JSON text (JSON when it
    starts with `{`). A file that cannot be read raises its OSError (FileNotFoundError, ...);
    text that does not parse raises SpecError naming the file, line and column."""
    name = "spec"
    if _is_path(source):
        name = str(source)
        text = Path(source).read_text()
    else:
        text = str(source)
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"{name}, line {exc.lineno}, column {exc.colno}"
            raise SpecError(f"{where}: not valid JSON: {exc.msg}", where=name,
                            problems=[Problem("(file)", f"line {exc.lineno}, column {exc.colno}: {exc.msg}")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        at, detail = yaml_error_text(exc)
        raise SpecError(f"{name}, {at}: not valid YAML: {detail}", where=name,
                        problems=[Problem("(file)", f"{at}: {detail}")]) from None


def yaml_error_text(exc: yaml.YAMLError) -> tuple[str, str]:
    """Where a YAML error is ("line 3, column 5") and what it is, without PyYAML's name for
    the stream (`"<unicode string>"`): the caller names the file or the body."""
    mark = getattr(exc, "problem_mark", None)
    at = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and opened is not None:
        context += f" that starts at line {opened.line + 1}, column {opened.column + 1}"
    return at, f"{problem} ({context})" if context else problem


def load_spec(source: str | Path) -> PipelineSpec:
    """Load a spec from a `.yaml`/`.yml`/`.json` file path, or from YAML/JSON text: its shape
    checked (`parse_spec`); `dash_ray.spec_check.check_spec` checks everything."""
    return parse_spec(load_document(source))
