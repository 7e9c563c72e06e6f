import pytest

from dash_ray.mapping.expressions import (
    MAX_DEPTH,
    Binary,
    Call,
    Case,
    Column,
    ExpressionError,
    InList,
    IsNull,
    Like,
    Literal,
    Nary,
    Unary,
    parse_expression,
)
from dash_ray.mapping.typecheck import check_expression

ENV = {"a": "int", "x": "double", "s": "string", "b": "bool", "t": "timestamp", "js": "json",
       "received_at": "timestamp"}


def error(text, env=ENV):
    with pytest.raises(ExpressionError) as err:
        check_expression(parse_expression(text), env)
    return err.value.position, err.value.message


def typed(text):
    return check_expression(parse_expression(text), ENV).type


def test_precedence_and_associativity():
    tree = parse_expression("1 + 2 * 3 - 4")
    assert isinstance(tree, Binary) and tree.op == "-"
    assert isinstance(tree.left, Binary) and tree.left.op == "+"
    assert isinstance(tree.left.right, Binary) and tree.left.right.op == "*"
    tree = parse_expression("NOT a = 1 AND b OR s IS NULL")
    assert isinstance(tree, Nary) and tree.op == "OR"
    left = tree.operands[0]
    assert isinstance(left, Nary) and left.op == "AND"
    assert isinstance(left.operands[0], Unary) and isinstance(left.operands[0].operand, Binary)
    assert isinstance(tree.operands[1], IsNull)
    tree = parse_expression("s || 'x' = 'ax'")
    assert isinstance(tree, Binary) and tree.op == "=" and isinstance(tree.left, Nary)


def test_chains_are_flat():
    tree = parse_expression(" AND ".join(["b"] * 200))
    assert isinstance(tree, Nary) and len(tree.operands) == 200
    tree = parse_expression(" || ".join(["s"] * 100))
    assert isinstance(tree, Nary) and len(tree.operands) == 100


def test_nodes():
    assert parse_expression("a NOT IN (1, 2)") == \
        InList(7, Column(1, "a"), (Literal(11, 1, "int"), Literal(14, 2, "int")), True)
    assert parse_expression("s LIKE 'a%'") == Like(3, Column(1, "s"), Literal(8, "a%", "string"), False)
    assert parse_expression("s IS NOT NULL") == IsNull(3, Column(1, "s"), True)
    assert parse_expression("LOWER(s)") == Call(1, "lower", (Column(7, "s"),))
    assert parse_expression("-5") == Literal(1, -5, "int")
    assert parse_expression("'it''s'") == Literal(1, "it's", "string")
    assert parse_expression('"and" + 1').left == Column(1, "and")
    assert parse_expression("1.5e3") == Literal(1, 1500.0, "double")
    assert parse_expression("true") == Literal(1, True, "bool")
    assert parse_expression("a != 1").op == "<>"
    case = parse_expression("CASE a WHEN 1 THEN 'one' ELSE 'many' END")
    assert isinstance(case, Case) and case.whens[0][0] == Binary(8, "=", Column(6, "a"), Literal(13, 1, "int"))


@pytest.mark.parametrize(("text", "position", "words"), [
    ("a +", 4, "ends where a value was expected"),
    ("a + * 2", 5, "unexpected '*'"),
    ("(a + 1", 7, "expected ')'"),
    ("a 1", 3, "unexpected '1'"),
    ("'abc", 1, "unterminated string"),
    ('"abc', 1, "unterminated quoted name"),
    ("a # 1", 3, "unexpected character '#'"),
    ("a IS 1", 6, "NULL after IS"),
    ("a NOT 1", 7, "IN or LIKE after NOT"),
    ("a IN 1", 6, "'(' after IN"),
    ("CASE END", 6, "at least one WHEN"),
    ("CASE WHEN b THEN 1", 19, "END to close CASE"),
    ("lower(s", 8, "',' or ')'"),
    ("99999999999999999999", 1, "64 bits"),
    ("1e999", 1, "too large"),
])
def test_syntax_errors(text, position, words):
    with pytest.raises(ExpressionError) as err:
        parse_expression(text)
    assert err.value.position == position
    assert words in err.value.message


def test_length_and_depth_are_bounded():
    with pytest.raises(ExpressionError, match="longer than 4096") as err:
        parse_expression("1+" * 2048 + "1")
    assert err.value.position == 4097
    for hostile in ("(" * 500 + "1" + ")" * 500, "-" * 2000 + "1", "NOT " * 1000 + "b",
                    "1+" * 1000 + "1", "lower(" * 300 + "s" + ")" * 300,
                    "CASE WHEN b THEN " * 150 + "1" + " END" * 150):
        with pytest.raises(ExpressionError, match=f"deeper than {MAX_DEPTH}"):
            parse_expression(hostile)
    parse_expression("(" * 30 + "1" + ")" * 30)  # reasonable nesting is fine


@pytest.mark.parametrize(("text", "type_"), [
    ("a + 1", "int"), ("a + x", "double"), ("a / 2", "double"), ("a % 2", "int"), ("x % 2", "double"),
    ("-a", "int"), ("a = 1.5", "bool"), ("s || a", "string"), ("b AND NOT b", "bool"),
    ("t > '2024-01-01'", "bool"), ("t IN ('2024-01-01T00:00:00Z', received_at)", "bool"),
    ("CASE WHEN b THEN 1 ELSE 2.5 END", "double"), ("CASE WHEN b THEN 'x' END", "string"),
    ("coalesce(a, 0)", "int"), ("coalesce(NULL, x)", "double"), ("coalesce(js, js)", "json"),
    ("length(s)", "int"), ("substr(s, 2)", "string"), ("round(x, 1)", "double"), ("round(a, -1)", "int"),
    ("floor(x)", "double"), ("ceil(a)", "int"), ("abs(a)", "int"), ("date_trunc('HOUR', t)", "timestamp"),
    ("epoch(t)", "double"), ("NULL", "null"), ("NULL + 1", "int"), ("NULL + NULL", "null"),
    ("js IS NULL", "bool"), ("s LIKE 'a%'", "bool"), ("a IN (1, NULL, 2.5)", "bool"),
])
def test_types(text, type_):
    assert typed(text) == type_


@pytest.mark.parametrize(("text", "position", "words"), [
    ("nope + 1", 1, "unknown field 'nope'"),
    ("a + 'x'", 5, "operator + needs int or double, got string"),
    ("s + s", 1, "use || to join strings"),
    ("a = 'x'", 3, "cannot compare int with string"),
    ("js = js", 4, "cannot compare json with json"),
    ("t > 'yesterday'", 5, "is not an ISO 8601 timestamp"),
    ("a AND b", 1, "AND needs bool, got int"),
    ("NOT s", 5, "NOT needs bool"),
    ("s LIKE s", 8, "string literal pattern"),
    ("a LIKE 'x'", 1, "LIKE needs string"),
    ("CASE WHEN b THEN 1 ELSE 'x' END", 25, "different types: int and string"),
    ("CASE WHEN a THEN 1 END", 11, "CASE WHEN needs bool"),
    ("read_csv('/etc/passwd')", 1, "unknown function 'read_csv'"),
    ("lower(a)", 7, "lower() needs string, got int"),
    ("lower(s, s)", 1, "takes 1 argument"),
    ("coalesce()", 1, "at least 1"),
    ("substr(s)", 1, "takes 2 to 3"),
    ("round(x, a)", 10, "integer literal"),
    ("round(x, 99)", 10, "between -30 and 30"),
    ("date_trunc('fortnight', t)", 12, "unit literal"),
    ("date_trunc(s, t)", 12, "unit literal"),
    ("epoch(s)", 7, "epoch() needs timestamp"),
    ("s || js", 6, "|| needs"),
    ("a IN (1, 'x')", 10, "cannot compare int with string (IN)"),
    ("-s", 2, "unary - needs"),
    ("9223372036854775808", 1, "64 bits"),
])
def test_type_errors(text, position, words):
    found_position, message = error(text)
    assert (found_position, words in message) == (position, True), message


def test_int64_min_literal_is_fine():
    assert typed("-9223372036854775808") == "int"


def test_later_field_gets_a_clear_message():
    with pytest.raises(ExpressionError, match="declared after this expression"):
        check_expression(parse_expression("later + 1"), {"a": "int"}, later={"later"})
