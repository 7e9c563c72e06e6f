"""What every part of the spec shares: the base model (frozen, unknown keys refused), the
names' patterns, and `SecretRef`, the one way a spec names a secret's value."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

__all__ = ["FIELD_NAME_PATTERN", "PIPELINE_ID_PATTERN", "RESERVED_FIELDS", "SECRET_NAME_PATTERN", "FieldName",
           "FieldType", "PipelineId", "SecretRef", "SpecModel", "secret_names", "secret_refs"]

PIPELINE_ID_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
# Columns the engine adds to every mapped row; a field may not take their names.
RESERVED_FIELDS = frozenset({"seq", "received_at", "extra"})

SECRET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
PipelineId = Annotated[str, StringConstraints(pattern=PIPELINE_ID_PATTERN)]
FieldName = Annotated[str, StringConstraints(pattern=FIELD_NAME_PATTERN)]
FieldType = Literal["string", "int", "double", "bool", "timestamp", "json"]


class SpecModel(BaseModel):
    """A part of a spec: frozen, unknown keys refused, fields also by their aliases."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SecretRef(SpecModel):
    """A named secret's value, by reference: `{"secret": "<name>"}` (put with
    `PUT /v1/secrets/{name}`). A spec never holds a secret's value, so neither does anything
    that shows or logs a spec; the pipeline's process is handed the values at its start."""

    secret: Annotated[str, StringConstraints(pattern=SECRET_NAME_PATTERN)]


def secret_refs(model: BaseModel) -> list[tuple[str, str]]:
    """Every named secret `model` (a spec or a part of one) refers to, as (field path, name)
    in the order the fields come (by their names as users write them)."""
    refs: list[tuple[str, str]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, SecretRef):
            refs.append((path, value.secret))
        elif isinstance(value, BaseModel):
            for name, info in type(value).model_fields.items():
                walk(getattr(value, name), f"{path}.{info.alias or name}".lstrip("."))
        elif isinstance(value, (list, tuple)):
            for n, item in enumerate(value):
                walk(item, f"{path}.{n}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")

    walk(model, "")
    return refs


def secret_names(model: BaseModel) -> set[str]:
    """The names of every named secret `model` refers to."""
    return {name for _, name in secret_refs(model)}
