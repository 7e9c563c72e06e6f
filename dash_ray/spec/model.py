"""The pipeline spec's models: fields and rules of the mapping, flush, limits, storage, and
the whole `PipelineSpec`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from dash_ray.spec.base import RESERVED_FIELDS, FieldName, FieldType, PipelineId, SpecModel
from dash_ray.spec.sinks import Sink, sink_name_problems
from dash_ray.spec.sources import PushSource, Source

__all__ = ["CompactionSpec", "FieldSpec", "FlushSpec", "LimitsSpec", "MappingSpec", "PipelineSpec", "RetentionSpec",
           "RollupsSpec", "RuleSpec", "StorageSpec"]

class FieldSpec(SpecModel):
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


class RuleSpec(SpecModel):
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


class MappingSpec(SpecModel):
    """How raw records become typed rows. With no fields, each record passes through whole.

    Checks that need more than one field (rules naming unknown fields, expressions, the type
    of `time`) are made by `dash_ray.mapping.compile_mapping`, which names each problem's path."""

    fields: dict[OutputName, FieldSpec] = Field(default_factory=dict)
    filter: str | None = None
    rules: list[RuleSpec] = Field(default_factory=list, alias="validate")
    keep_extra: bool = False


class FlushSpec(SpecModel):
    """When the pipeline writes its buffered records to the lake: whichever comes first.
    Each flush writes a few files per area (silver, rollups, bronze), each synced, so its cost
    is mostly per flush: at a high rate the count decides (10,000 records, ~20% less CPU per
    signed single event than 1,000 in `benchmarks/`), at a low one the time."""

    records: int = Field(default=10_000, ge=1, le=1_000_000)
    seconds: float = Field(default=1.0, ge=0.01, le=3600)


class LimitsSpec(SpecModel):
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


def _default_granularities() -> list[Granularity]:
    return ["10s", "1m", "1h"]


class RollupsSpec(SpecModel):
    """Per-bucket partial aggregates the silver store keeps as each range is stored, so
    aggregate queries read buckets instead of rows (dash_ray.silver.rollup). `by`: the fields
    they are grouped by (default: the string and bool fields, at most four; `[]` for none)."""

    enabled: bool = True
    by: list[FieldName] | None = Field(default=None, max_length=8)
    granularities: list[Granularity] = Field(default_factory=_default_granularities, min_length=1)


class RetentionSpec(SpecModel):
    """How many days each kind of data is kept (by its partition's date: receive date for
    bronze and dead letters, event date for silver and rollups); unset keeps it forever."""

    bronze_days: int | None = Field(default=None, ge=1, le=100_000)
    silver_days: int | None = Field(default=None, ge=1, le=100_000)
    dead_days: int | None = Field(default=None, ge=1, le=100_000)


class CompactionSpec(SpecModel):
    """Small lake files are merged in the background into files of about `target_bytes`,
    once at least `min_files` small ones of a day wait."""

    enabled: bool = True
    target_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, le=4 * 1024**3)
    min_files: int = Field(default=8, ge=2, le=10_000)
    interval_s: float = Field(default=60.0, ge=1.0, le=86_400.0)


class StorageSpec(SpecModel):
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


class PipelineSpec(SpecModel):
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
    sinks: list[Sink] = Field(default_factory=list, max_length=20)

    @field_validator("sinks")
    @classmethod
    def _sink_names(cls, sinks: list[Sink]) -> list[Sink]:
        for _, message in sink_name_problems([s.name for s in sinks]):
            raise ValueError(message)
        return sinks

    # [ext] Where the pipeline runs: `dedicated`, a Ray actor (a process) of its own, or
    # `shared`, one of up to DASH_SHARED_HOST_PIPELINES pipelines in a host actor (~1 MB each
    # instead of ~60-90 MB; they share its event loop, so a busy one slows its neighbours).
    placement: Literal["dedicated", "shared"] = "dedicated"

    def to_json_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data, keys as users write them (`validate`, not `rules`)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=False)
