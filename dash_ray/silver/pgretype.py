"""Retyping a pipeline's PostgreSQL silver column when a new spec version widens its field
(`dash_ray.silver.evolution`: int to double, any scalar to string), so old rows read in the
new type, and exactly as the lake's engine shows them: DuckDB, reading old and new Parquet
files together, casts an old int to a double and an old scalar to its own text, and the
ALTERs here convert the table's old values the same way, so both stores answer alike."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

from dash_ray.silver.pgschema import PG_TYPES, table
from dash_ray.silver.schema import Column

__all__ = ["SETUP", "retype_columns"]

# Old values as text, exactly as DuckDB casts them when it reads old and new lake files
# together: timestamps as `2026-05-01 12:00:00.5+00` (UTC, ISO: the statements run with those
# settings), doubles as Python's repr writes them (`_DOUBLE_TEXT`).
_AS_TEXT = {"bigint": "{}::text", "boolean": "{}::text", "timestamp with time zone": "{}::text",
            "double precision": "dash_silver._double_text({})"}
# Python's repr of a double: the fewest significant digits that read back as the same double,
# in fixed notation from 1e-4 to 1e16 (with `.0` when integral), else as `4.5e+16`; `nan`,
# `inf`. PostgreSQL's own text is shortest too, but for integral doubles past 2^53 it writes
# every digit (45997786075464896 for 4.59977860754649e+16): from 1e15 on, 15 and 16 digits are
# tried first (in plpgsql, slow; most values take the first branches, inlined into the ALTER).
_DOUBLE_TEXT = """CREATE OR REPLACE FUNCTION dash_silver._double_text(x float8) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN x = 'NaN'::float8 THEN 'nan' WHEN x = 'Infinity'::float8 THEN 'inf'
            WHEN x = '-Infinity'::float8 THEN '-inf'
            WHEN x = 0 THEN CASE WHEN x::text LIKE '-%' THEN '-0.0' ELSE '0.0' END
            -- Most values: PostgreSQL's text is Python's, but for the `.0` of an integral value.
            WHEN abs(x) < 1e-4 THEN x::text
            WHEN abs(x) < 1e15 THEN CASE WHEN x = trunc(x) THEN x::text || '.0' ELSE x::text END
            ELSE dash_silver._large_double_text(x) END
$$"""
_LARGE_DOUBLE_TEXT = """CREATE OR REPLACE FUNCTION dash_silver._large_double_text(x float8) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    exact numeric := x::text::numeric;
    shortest numeric := exact;
    candidate numeric;
    digits text;
    e int := dash_silver._exponent(exact);
BEGIN
    FOR n IN 15..16 LOOP
        candidate := round(exact, n - 1 - e);
        IF abs(candidate) <= 1.7976931348623157e308 AND candidate::float8 = x THEN
            shortest := candidate;
            EXIT;
        END IF;
    END LOOP;
    shortest := trim_scale(shortest);
    e := dash_silver._exponent(shortest);
    IF e < 16 THEN
        RETURN CASE WHEN strpos(shortest::text, '.') > 0 THEN shortest::text ELSE shortest::text || '.0' END;
    END IF;
    digits := rtrim(ltrim(replace(abs(shortest)::text, '.', ''), '0'), '0');
    RETURN CASE WHEN x < 0 THEN '-' ELSE '' END || left(digits, 1)
        || CASE WHEN length(digits) > 1 THEN '.' || substr(digits, 2) ELSE '' END
        || 'e+' || e;
END
$$"""
# The decimal exponent of a non-zero numeric (that of its first significant digit), from its
# digits: numeric's log() rounds 16.999... up to 17.
_EXPONENT = """CREATE OR REPLACE FUNCTION dash_silver._exponent(d numeric) RETURNS int
LANGUAGE sql IMMUTABLE STRICT AS $$
SELECT CASE WHEN abs(d) >= 1 THEN length(split_part(abs(d)::text, '.', 1)) - 1
            ELSE -(length(split_part(abs(d)::text, '.', 2)) - length(ltrim(split_part(abs(d)::text, '.', 2), '0')) + 1)
       END
$$"""
SETUP = ("SET LOCAL TimeZone = 'UTC'", "SET LOCAL DateStyle = 'ISO'", "SET LOCAL extra_float_digits = 1",
                   _EXPONENT, _LARGE_DOUBLE_TEXT, _DOUBLE_TEXT)


def retype_columns(pipeline_id: str, columns: Iterable[Column], present: dict[str, str]) -> list[sql.Composed]:
    """ALTERs for the columns whose table type (`present`: name to PostgreSQL type) is a type
    the field was widened from: bigint to double precision, or a scalar to text. Run them
    after the statements of `SETUP` (settings, and the functions they use), in one transaction."""
    statements = []
    for c in columns:
        old, wanted = present.get(c.name), PG_TYPES[c.type]
        if old is None or old == wanted:
            continue
        column = sql.Identifier(c.name)
        if wanted == "text" and old in _AS_TEXT:
            using = sql.SQL(_AS_TEXT[old]).format(column)
        elif (old, wanted) == ("bigint", "double precision"):
            using = sql.SQL("{}::double precision").format(column)
        else:
            continue  # not a widening: the deploy check refuses it; rows that do not fit are refused
        statements.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
            table(pipeline_id), column, sql.SQL(wanted), using))
    return statements
