"""Schema evolution: what a new version of a pipeline's mapping may change about the columns
its silver rows already have.

Added fields become new columns (old rows read null there); removed fields stay in the rows
already stored but are no longer queried; a field whose type changes must be readable in its
new type for every old row, so only widenings are allowed (`int` to `double`, and any scalar
to `string`): stores keep old values and read them as the new type (DuckDB unifies the files'
types, PostgreSQL alters the column, `dash_ray.silver.pgretype`), and both show
an old value alike (an int as a double rounded to the nearest; a scalar as DuckDB's text:
`2.0`, `1e-05`, `true`, `2026-05-01 12:00:00.5+00`). Values mapped after the change are the
mapping's (`dash_ray.mapping.casts`: `0.00001`, `2026-05-01T12:00:00.5Z`). Any other change is
refused at deploy with the field's path, naming both types and what to do instead.
"""

from __future__ import annotations

from dash_ray.errors import Problem
from dash_ray.spec import PipelineSpec

__all__ = ["WIDENINGS", "evolution_problems"]

WIDENINGS = frozenset({("int", "double"), ("int", "string"), ("double", "string"), ("bool", "string"),
                       ("timestamp", "string")})


def evolution_problems(old: PipelineSpec, new: PipelineSpec) -> list[Problem]:
    """Problems with replacing `old` by `new`, for a 422 at deploy."""
    problems = []
    old_fields, new_fields = old.mapping.fields, new.mapping.fields
    for name, field in new_fields.items():
        before = old_fields.get(name)
        if before is None or before.type == field.type or (before.type, field.type) in WIDENINGS:
            continue
        problems.append(Problem(
            f"mapping.fields.{name}.type",
            f"field {name!r} holds {before.type} values in the rows already stored, which cannot all be "
            f"read as {field.type}; keep {before.type} (or widen it: int to double, any scalar to string), "
            f"or add a new field under another name"))
    if old.mapping.keep_extra and not new.mapping.keep_extra and "extra" in new_fields:
        problems.append(Problem("mapping.fields.extra", "'extra' holds the kept extra keys of stored rows"))
    return problems
