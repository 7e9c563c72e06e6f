"""The pipeline spec: frozen pydantic models, loaded from YAML or JSON, every problem reported
with its field path. The spec is plain data and the one contract that crosses every layer.

Modules: `base` (the base model, names' patterns, `SecretRef`), `sources` (the `source`
block, a model per kind; the polling kinds' in `polling`), `model` (mapping, flush, limits, storage and `PipelineSpec`),
`parse` (reading a spec, the problems' messages). Import from here."""

from __future__ import annotations

from dash_ray.spec.base import (
    FIELD_NAME_PATTERN,
    PIPELINE_ID_PATTERN,
    RESERVED_FIELDS,
    SECRET_NAME_PATTERN,
    FieldType,
    SecretRef,
    secret_names,
    secret_refs,
)
from dash_ray.spec.model import (
    CompactionSpec,
    FieldSpec,
    FlushSpec,
    LimitsSpec,
    MappingSpec,
    PipelineSpec,
    RetentionSpec,
    RollupsSpec,
    RuleSpec,
    StorageSpec,
)
from dash_ray.spec.parse import load_document, load_spec, parse_spec, yaml_error_text
from dash_ray.spec.polling import GraphqlPollSource, HttpPollSource
from dash_ray.spec.sources import (
    SOURCE_KINDS,
    DemoSource,
    MqttSource,
    MqttTls,
    PipelineSource,
    PushSource,
    Source,
    WebhookSource,
)

__all__ = [
    "FIELD_NAME_PATTERN",
    "PIPELINE_ID_PATTERN",
    "RESERVED_FIELDS",
    "SECRET_NAME_PATTERN",
    "SOURCE_KINDS",
    "DemoSource",
    "FieldSpec",
    "FieldType",
    "FlushSpec",
    "GraphqlPollSource",
    "HttpPollSource",
    "LimitsSpec",
    "MappingSpec",
    "PipelineSpec",
    "PushSource",
    "RuleSpec",
    "SecretRef",
    "Source",
    "CompactionSpec",
    "RetentionSpec",
    "RollupsSpec",
    "StorageSpec",
    "WebhookSource",
    "MqttSource",
    "MqttTls",
    "PipelineSource",
    "load_document",
    "load_spec",
    "parse_spec",
    "secret_names",
    "secret_refs",
    "yaml_error_text",
]
