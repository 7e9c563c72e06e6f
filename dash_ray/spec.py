"""The pipeline spec: frozen pydantic models, loaded from YAML or JSON, every problem reported
with its field path. The spec is plain data and the one contract that crosses every layer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from dash_ray.errors import Problem, SpecError

__all__ = [
    "DemoSource",
    "FieldSpec",
    "FieldType",
    "FlushSpec",
    "LimitsSpec",
    "MappingSpec",
    "PipelineSpec",
    "PushSource",
    "RuleSpec",
    "Source",
    "CompactionSpec",
    "RetentionSpec",
    "RollupsSpec",
    "StorageSpec",
    "WebhookSource",
    "load_document",
    "load_spec",
    "parse_spec",
    "yaml_error_text",
]

PIPELINE_ID_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
# Columns the engine adds to every mapped row; a field may not take their names.
RESERVED_FIELDS = frozenset({"seq", "received_at", "extra"})

PipelineId = Annotated[str, StringConstraints(pattern=PIPELINE_ID_PATTERN)]
FieldName = Annotated[str, StringConstraints(pattern=FIELD_NAME_PATTERN)]
FieldType = Literal["string", "int", "double", "bool", "timestamp", "json"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FieldSpec(_Model):
    """One output field: read from a JSONPath `path` or computed by an `expr`, then cast."""

    path: str | None = None
    expr: str | None = None
    type: FieldType = "string"
    required: bool = False
    default: Any = None
    unit: Literal["s", "ms", "us", "ns"] | None = None
    format: str | None = None
    timezone: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        if (self.path is None) == (self.expr is None):
            raise ValueError("give exactly one of 'path' or 'expr'")
        if self.type != "timestamp" and (self.unit or self.format or self.timezone):
            raise ValueError("'unit', 'format' and 'timezone' apply only to type 'timestamp'")
        if self.unit is not None and self.format is not None:
            raise ValueError("give 'unit' (epoch numbers) or 'format' (strftime), not both")
        if self.expr is not None and self.required:
            raise ValueError("'required' applies to path fields; use a validate rule for an expr")
        return self


class RuleSpec(_Model):
    """A validation rule on one mapped field; a failing record is dead-lettered with its rule.
    `regex` is RE2 syntax and is checked by `compile_mapping`, which runs it."""

    field: FieldName
    required: bool = False
    min: float | None = None
    max: float | None = None
    enum: list[Any] | None = Field(default=None, min_length=1)
    regex: str | None = None

    @model_validator(mode="after")
    def _some_rule(self) -> RuleSpec:
        if not (self.required or self.min is not None or self.max is not None
                or self.enum is not None or self.regex is not None):
            raise ValueError("a rule needs at least one of required, min, max, enum, regex")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is greater than 'max'")
        return self


def _not_reserved(name: str) -> str:
    if name in RESERVED_FIELDS:
        raise ValueError(f"field name {name!r} is reserved (the engine adds it to every row)")
    return name


OutputName = Annotated[FieldName, AfterValidator(_not_reserved)]


class MappingSpec(_Model):
    """How raw records become typed rows. With no fields, each record passes through whole.

    Checks that need more than one field (rules naming unknown fields, expressions, the type
    of `time`) are made by `dash_ray.mapping.compile_mapping`, which names each problem's path."""

    fields: dict[OutputName, FieldSpec] = Field(default_factory=dict)
    filter: str | None = None
    rules: list[RuleSpec] = Field(default_factory=list, alias="validate")
    keep_extra: bool = False


class PushSource(_Model):
    """Signed HTTP push to `POST /v1/pipelines/{id}/events`."""

    kind: Literal["push"] = "push"


class WebhookSource(_Model):
    """A webhook receiver at `POST /v1/hooks/{id}`, verified by one scheme (each described in
    `dash_ray.ingest.signing`): `dash` (this project's `Dash-Signature`), `github`
    (`X-Hub-Signature-256`), `stripe` (`Stripe-Signature`), `slack` (`X-Slack-Signature`),
    `shopify` (`X-Shopify-Hmac-Sha256`), `standard` (Standard Webhooks), or `hmac` (a header
    you name, carrying an HMAC of the raw body: `header`, `algorithm`, `encoding`, `prefix`).
    `idempotency_header` names a header whose value is the request's idempotency key (by
    default GitHub's and Shopify's delivery id)."""

    kind: Literal["webhook"] = "webhook"
    verify: Literal["dash", "github", "stripe", "slack", "shopify", "standard", "hmac"] = "dash"
    header: str | None = None
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    idempotency_header: str | None = None

    @model_validator(mode="after")
    def _header(self) -> WebhookSource:
        if self.verify == "hmac" and not self.header:
            raise ValueError("verify 'hmac' needs 'header', the request header holding the signature")
        if self.verify != "hmac":
            # Values other than the defaults (a stored spec carries every field).
            options = [name for name in ("algorithm", "encoding", "header", "prefix")
                       if getattr(self, name) != WebhookSource.model_fields[name].default]
            if options:
                raise ValueError(f"{', '.join(repr(o) for o in options)} apply only to verify 'hmac'; "
                                 f"{self.verify!r} fixes its own")
        return self


class DemoSource(_Model):
    """Built-in generator of simulated sensor readings (`dash_ray.sources.demo`), `rate` records a
    second, fed through the same durable ingest path as pushed records."""

    kind: Literal["demo"] = "demo"
    rate: float = Field(default=5.0, gt=0, le=100_000)
    devices: int = Field(default=6, ge=1, le=10_000)


Source = Annotated[Union[PushSource, WebhookSource, DemoSource], Field(discriminator="kind")]


class FlushSpec(_Model):
    """When the pipeline writes its buffered records to the lake: whichever comes first.
    Each flush writes a few files per area (silver, rollups, bronze), each synced, so its cost
    is mostly per flush: at a high rate the count decides (10,000 records, ~20% less CPU per
    signed single event than 1,000 in `benchmarks/`), at a low one the time."""

    records: int = Field(default=10_000, ge=1, le=1_000_000)
    seconds: float = Field(default=1.0, ge=0.01, le=3600)


class LimitsSpec(_Model):
    """Bounds on what one pipeline accepts: past `queue_records` records or `queue_bytes`
    bytes of raw records not yet stored, 429; a single request larger than either, 413.
    While the queue is full and a flush is draining it, a request waits up to `queue_wait_s`
    for room before its 429 (a burst is slowed, not refused); when no flush is under way it
    is refused at once."""

    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    queue_records: int = Field(default=200_000, ge=100, le=50_000_000)
    queue_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024, le=64 * 1024**3)
    queue_wait_s: float = Field(default=2.0, ge=0, le=60)


Granularity = Literal["10s", "1m", "1h", "1d"]


class RollupsSpec(_Model):
    """Per-bucket partial aggregates the silver store keeps as each range is stored, so
    aggregate queries read buckets instead of rows (dash_ray.silver.rollup). `by`: the fields
    they are grouped by (default: the string and bool fields, at most four; `[]` for none)."""

    enabled: bool = True
    by: list[FieldName] | None = Field(default=None, max_length=8)
    granularities: list[Granularity] = Field(default_factory=lambda: ["10s", "1m", "1h"], min_length=1)


class RetentionSpec(_Model):
    """How many days each kind of data is kept (by its partition's date: receive date for
    bronze and dead letters, event date for silver and rollups); unset keeps it forever."""

    bronze_days: int | None = Field(default=None, ge=1, le=100_000)
    silver_days: int | None = Field(default=None, ge=1, le=100_000)
    dead_days: int | None = Field(default=None, ge=1, le=100_000)


class CompactionSpec(_Model):
    """Small lake files are merged in the background into files of about `target_bytes`,
    once at least `min_files` small ones of a day wait."""

    enabled: bool = True
    target_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, le=4 * 1024**3)
    min_files: int = Field(default=8, ge=2, le=10_000)
    interval_s: float = Field(default=60.0, ge=1.0, le=86_400.0)


class StorageSpec(_Model):
    """Where this pipeline's data goes and how it is kept. `lake` unset means the platform's
    lake; `silver` unset means PostgreSQL when the platform has a database (DASH_PG_DSN), the
    lake's own silver Parquet otherwise (queried with DuckDB)."""

    lake: str | None = None
    silver: Literal["lake", "postgres"] | None = None
    rollups: RollupsSpec = Field(default_factory=RollupsSpec)
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    compaction: CompactionSpec = Field(default_factory=CompactionSpec)

    @model_validator(mode="after")
    def _scheme(self) -> StorageSpec:
        if self.lake is not None and not re.match(r"^(file://|s3://|memory://|/)", self.lake):
            raise ValueError("'lake' must be an absolute path or a file://, s3:// or memory:// URL")
        return self


class PipelineSpec(_Model):
    """A whole pipeline: where records come from, how they map, how they are kept."""

    id: PipelineId
    name: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=2000)
    source: Source = Field(default_factory=PushSource)
    mapping: MappingSpec = Field(default_factory=MappingSpec)
    hot_records: int = Field(default=100, ge=1, le=100_000)
    flush: FlushSpec = Field(default_factory=FlushSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)

    def to_json_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data, keys as users write them (`validate`, not `rules`)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=False)


# In docs/API.md's contract but not served by this code yet: a spec using them is a 422 that
# says so (docs/API.md, "What this code serves").
NOT_YET_SOURCES = ("http_poll", "graphql_poll", "pipeline")
NOT_YET_KEYS = ("sinks",)
SOURCE_KINDS = ("push", "webhook", "demo")
_PATTERNS = {
    PIPELINE_ID_PATTERN: "1 to 63 characters of a-z, 0-9 and '-', starting with a letter",
    FIELD_NAME_PATTERN: "a field name is 1 to 63 characters of A-Z, a-z, 0-9 and '_', not starting with a digit",
}


def _message(err: Any, loc: list[str]) -> tuple[list[str], str]:
    """The path and message a user reads for one pydantic error."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "union_tag_invalid" and loc == ["source"]:
        tag, kinds = ctx.get("tag"), ", ".join(SOURCE_KINDS)
        if tag in NOT_YET_SOURCES:
            return ["source", "kind"], (f"source kind {tag!r} is in docs/API.md's contract but not supported yet; "
                                        f"this Dash takes {kinds}")
        return ["source", "kind"], f"unknown source kind {str(tag)[:40]!r}; give one of {kinds}"
    if kind == "union_tag_not_found" and loc == ["source"]:
        return ["source", "kind"], f"missing; give one of {', '.join(SOURCE_KINDS)}"
    if kind == "extra_forbidden" and len(loc) == 1 and loc[0] in NOT_YET_KEYS:
        return loc, f"{loc[0]!r} is in docs/API.md's contract but not supported yet; leave it out for now"
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
