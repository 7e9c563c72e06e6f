"""Properties over random records and random valid specs: `apply` never crashes, every record
lands in exactly one of rows/dead/filtered, the result is deterministic, and mapping a batch
whole or in pieces gives the same result."""

from __future__ import annotations

import itertools

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_ray.mapping import DEAD_LETTER_SCHEMA, CompiledMapping, MappingResult

KEYS = ["a", "b", "c", "ts", "n", "odd key", "ü"]
PATHS = ["$.a", "$.b", "$.c", "$.ts", "$.n", "$.a.b", "$.b.c", "$.a[0]", "$.a[-1]", "$.b[1].c",
         "$['odd key']", "$.ü", "$.n.a"]
WILD_PATHS = ["$.a[*]", "$.b[*].c", "$[*]", "$.a.*", "$"]
TYPES = ["string", "int", "double", "bool", "timestamp", "json"]
DEFAULTS = {"string": ["d", ""], "int": [0, -5, "7"], "double": [0, 1.5, "2.5"], "bool": [True, "false", 0],
            "timestamp": ["2024-01-01T00:00:00Z", 0, 1.5], "json": [{"k": [1]}, "x", 0]}
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- records -----------------------------------------------------------------------------------

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), text,
    st.sampled_from(["21.5", " 42 ", "true", "0", "2024-05-01T12:00:00Z", "2024-05-01 12:00", "2024-02-30",
                     "1700000000", "NaN", "", "1e999", "9223372036854775808"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | text, inner, max_size=4)), max_leaves=12)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
ODD_RAWS = ['{"a": NaN}', '{"a": 1,}', '[1, 2]', '"x"', "null", "", "{", '{"n": 123456789012345678901234567890}',
            '{"n": 1e400}', '\ufeff{"a": 1}', '{"a": "\\ud800"}', "[" * 300 + "]" * 300, '{"a":1}{"b":2}',
            '{"a": 1, "a": "dup"}', '  {"a": [1, {"b": {"c": true}}]}  ',
            '{"a": ' + "[" * 300 + "]" * 300 + ', "b": {"c": 1}}', '{"b": [' + '{"c": ' * 260 + "1" + "}" * 260 + "]}"]
raws = st.one_of(
    objects.map(lambda o: orjson.dumps(o).decode()),
    objects.map(lambda o: orjson.dumps(o).decode()),
    values.map(lambda v: orjson.dumps(v).decode()),
    st.sampled_from(ODD_RAWS),
    text,
)

# -- specs -------------------------------------------------------------------------------------


@st.composite
def expressions(draw, fields: dict[str, str], type_: str, depth: int = 0) -> str:
    """A type-correct expression of `type_` over `fields` (name → type)."""
    names = [n for n, t in fields.items() if t == type_]
    leaf = depth >= 3 or draw(st.booleans())
    if type_ == "int":
        options = [str(draw(st.integers(-10**12, 10**12)))] + names
        if not leaf:
            a, b = draw(expressions(fields, "int", depth + 1)), draw(expressions(fields, "int", depth + 1))
            s = draw(expressions(fields, "string", depth + 1))
            options += [f"({a} {draw(st.sampled_from(['+', '-', '*', '%']))} {b})", f"-({a})", f"abs({a})",
                        f"length({s})", f"round({a}, -1)", f"coalesce({a}, {b})", f"ceil({a})",
                        f"CASE WHEN {draw(expressions(fields, 'bool', depth + 1))} THEN {a} ELSE {b} END"]
    elif type_ == "double":
        options = [repr(draw(st.floats(-1e6, 1e6))), "NULL"] + names
        if not leaf:
            a = draw(expressions(fields, draw(st.sampled_from(["int", "double"])), depth + 1))
            b = draw(expressions(fields, draw(st.sampled_from(["int", "double"])), depth + 1))
            t = draw(expressions(fields, "timestamp", depth + 1))
            options += [f"({a} / {b})", f"({a} * 1.5 + {b})", f"round({a} * 1.0, 2)", f"floor({a} * 1.0)",
                        f"epoch({t})", f"({a} % 2.5)"]
    elif type_ == "string":
        options = ["'it''s'", "'ü'", "''"] + names
        if not leaf:
            a, b = draw(expressions(fields, "string", depth + 1)), draw(expressions(fields, "int", depth + 1))
            options += [f"lower({a})", f"upper({a})", f"({a} || {b})", f"substr({a}, {b}, 3)", f"substr({a}, 2)",
                        f"coalesce({a}, 'none')", f"({a} || {draw(expressions(fields, 'timestamp', depth + 1))})"]
    elif type_ == "bool":
        options = ["TRUE", "FALSE", "NULL"] + names
        if not leaf:
            a, b = draw(expressions(fields, "int", depth + 1)), draw(expressions(fields, "double", depth + 1))
            s = draw(expressions(fields, "string", depth + 1))
            p = draw(expressions(fields, "bool", depth + 1))
            options += [f"({a} < {b})", f"({a} = {b})", f"({s} LIKE '%a_')", f"({a} IN (1, 2, NULL))",
                        f"({s} IS NULL)", f"(NOT {p})", f"({p} AND {a} <> 3)", f"({p} OR {s} >= 'b')",
                        f"({draw(expressions(fields, 'timestamp', depth + 1))} > '2024-01-01')"]
    else:  # timestamp
        options = ["received_at"] + names
        if not leaf:
            t = draw(expressions(fields, "timestamp", depth + 1))
            unit = draw(st.sampled_from(["second", "minute", "hour", "day", "week", "month", "year"]))
            options += [f"date_trunc('{unit}', {t})", f"coalesce({t}, received_at)"]
    return draw(st.sampled_from(options))


@st.composite
def mappings(draw) -> dict:
    fields: dict[str, dict] = {}
    types: dict[str, str] = {"received_at": "timestamp"}
    for i in range(draw(st.integers(0, 7))):
        name = "time" if i == 0 and draw(st.booleans()) else f"f{i}"
        if name != "time" and types and draw(st.integers(0, 3)) == 0:
            expr_type = draw(st.sampled_from(["int", "double", "string", "bool", "timestamp"]))
            expr = draw(expressions(types, expr_type))
            target = draw(st.sampled_from([expr_type, expr_type, "string", "json", "int", "double"]))
            if (expr_type, target) in {("bool", "int"), ("bool", "double"), ("timestamp", "int"),
                                       ("timestamp", "double")}:
                target = expr_type
            fields[name] = {"expr": expr, "type": target}
        else:
            type_ = "timestamp" if name == "time" else draw(st.sampled_from(TYPES))
            wild = type_ == "json" and draw(st.booleans())
            field = {"path": draw(st.sampled_from(WILD_PATHS if wild else PATHS)), "type": type_}
            if type_ == "timestamp" and draw(st.booleans()):
                field["unit"] = draw(st.sampled_from(["s", "ms", "us", "ns"]))
            if type_ == "timestamp" and draw(st.booleans()):
                field["timezone"] = draw(st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns"]))
            choice = draw(st.integers(0, 3))
            if choice == 0:
                field["required"] = True
            elif choice == 1:
                field["default"] = draw(st.sampled_from(DEFAULTS[type_]))
            fields[name] = field
        types[name] = fields[name]["type"]
    mapping: dict = {"fields": fields, "keep_extra": draw(st.booleans())}
    if draw(st.booleans()):
        mapping["filter"] = draw(expressions(types, "bool"))
    rules = []
    for name, type_ in types.items():
        if name == "received_at" or not draw(st.booleans()):
            continue
        rule: dict = {"field": name, "required": draw(st.booleans())}
        if type_ in ("int", "double"):
            rule["min"], rule["max"] = -1000, draw(st.sampled_from([0, 10**6]))
            rule["enum"] = draw(st.sampled_from([None, [1, 2, 3]]))
        elif type_ == "string":
            rule["regex"] = draw(st.sampled_from(["^[a-z]*$", "x", "^.{0,5}$"]))
        elif type_ == "timestamp":
            rule["min"] = 0
        if any(v for k, v in rule.items() if k != "field"):
            rules.append({k: v for k, v in rule.items() if v is not None})
    mapping["validate"] = rules
    return mapping


# -- properties --------------------------------------------------------------------------------


def check_invariants(compiled: CompiledMapping, batch: pa.Table, result: MappingResult) -> None:
    n = batch.num_rows
    assert result.rows.num_rows + result.dead.num_rows + result.filtered == n
    assert result.rows.schema == compiled.schema
    assert result.dead.schema == DEAD_LETTER_SCHEMA
    kept = result.rows.column("seq").to_pylist()
    dead = result.dead.column("seq").to_pylist()
    assert kept == sorted(kept) and dead == sorted(dead)
    assert not set(kept) & set(dead)
    assert set(kept) | set(dead) <= set(batch.column("seq").to_pylist())
    assert None not in result.dead.column("rule").to_pylist()
    assert None not in result.dead.column("reason").to_pylist()
    # What readers do with the rows must work: timestamps convert, json columns parse.
    for record in result.rows.to_pylist():
        assert record["time"] is not None
        for name, value in record.items():
            if value is not None and (name == "extra" or compiled.spec.fields.get(name, None) is not None
                                      and compiled.spec.fields[name].type == "json"):
                orjson.loads(value)
    for value in result.dead.column("value").to_pylist():
        if value is not None:
            orjson.loads(value)


@SETTINGS
@given(mapping=mappings(), records=st.lists(raws, max_size=25))
def test_random_specs_and_records_never_crash(mp, mapping, records):
    compiled = mp.compile(mapping)
    batch = mp.batch(records, first_seq=100)
    result = compiled.apply(batch)
    check_invariants(compiled, batch, result)
    assert compiled.apply(batch) == result  # deterministic


@SETTINGS
@given(mapping=mappings(), records=st.lists(raws, min_size=1, max_size=25), data=st.data())
def test_batch_invariance(mp, mapping, records, data):
    compiled = mp.compile(mapping)
    batch = mp.batch(records)
    whole = compiled.apply(batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(records)), max_size=4)))
    bounds = [0, *cuts, len(records)]
    parts = [compiled.apply(batch.slice(a, b - a)) for a, b in itertools.pairwise(bounds)]
    assert pa.concat_tables([p.rows for p in parts]) == whole.rows
    assert pa.concat_tables([p.dead for p in parts]) == whole.dead
    assert sum(p.filtered for p in parts) == whole.filtered
    singles = [compiled.apply(batch.slice(i, 1)) for i in range(len(records))]
    assert pa.concat_tables([s.rows for s in singles]) == whole.rows
    assert pa.concat_tables([s.dead for s in singles]) == whole.dead


@SETTINGS
@given(records=st.lists(raws, max_size=30))
def test_pass_through_accounts_for_every_record(mp, records):
    compiled = mp.compile({})
    batch = mp.batch(records)
    result = compiled.apply(batch)
    check_invariants(compiled, batch, result)
    assert result.filtered == 0
    for raw, extra in zip([r for r in records if _is_object(r)], result.rows.column("extra").to_pylist(), strict=True):
        assert raw == extra


def _is_object(raw: str) -> bool:
    try:
        return type(orjson.loads(raw)) is dict
    except orjson.JSONDecodeError:
        return False
