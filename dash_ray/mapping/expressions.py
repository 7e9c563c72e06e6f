"""The expression language of `expr` fields and `filter`: lexer, parser and syntax tree.

Expressions are parsed into our own tree and never run as text anywhere, so nothing in them
can reach files, the network or Python. Precedence, loosest first:

    OR  <  AND  <  NOT  <  IS [NOT] NULL  <  = <> != < <= > >=  <  [NOT] IN, [NOT] LIKE
        <  ||  <  + -  <  * / %  <  unary - +

Literals: integers (64-bit), decimals and exponents (double), 'strings' ('' is a quote),
TRUE, FALSE, NULL. Keywords and function names are case-insensitive; field names are not
(write "name" in double quotes for a field whose name is a keyword). `CASE x WHEN v THEN …`
is read as `CASE WHEN x = v THEN …`. AND, OR and || chains become one n-ary node.

Hostile input is bounded: an expression longer than MAX_LENGTH characters or nested deeper
than MAX_DEPTH is an ExpressionError, never a RecursionError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Binary",
    "Call",
    "Case",
    "Column",
    "Expr",
    "ExpressionError",
    "InList",
    "IsNull",
    "Like",
    "Literal",
    "Nary",
    "Unary",
    "literal_value",
    "parse_expression",
]

MAX_LENGTH = 4096
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ExpressionError(ValueError):
    """An expression that does not parse or type-check; `position` is 1-based."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


# -- syntax tree -------------------------------------------------------------------------------
# Every node has `pos` (1-based position of the token that names it) and `type`, which is "?"
# until the type checker returns a typed copy.


@dataclass(frozen=True)
class Literal:
    pos: int
    value: Any
    type: str  # "int", "double", "string", "bool", "null" (the checker may make a string a timestamp)


@dataclass(frozen=True)
class Column:
    pos: int
    name: str
    type: str = "?"


@dataclass(frozen=True)
class Unary:
    pos: int
    op: str  # "-", "+", "NOT"
    operand: Expr
    type: str = "?"


@dataclass(frozen=True)
class Binary:
    pos: int
    op: str  # + - * / % = <> < <= > >=
    left: Expr
    right: Expr
    type: str = "?"


@dataclass(frozen=True)
class Nary:
    pos: int
    op: str  # "AND", "OR", "||"
    operands: tuple[Expr, ...]
    type: str = "?"


@dataclass(frozen=True)
class IsNull:
    pos: int
    operand: Expr
    negated: bool
    type: str = "?"


@dataclass(frozen=True)
class InList:
    pos: int
    operand: Expr
    items: tuple[Expr, ...]
    negated: bool
    type: str = "?"


@dataclass(frozen=True)
class Like:
    pos: int
    operand: Expr
    pattern: Expr
    negated: bool
    type: str = "?"


@dataclass(frozen=True)
class Case:
    pos: int
    whens: tuple[tuple[Expr, Expr], ...]
    otherwise: Expr | None
    type: str = "?"


@dataclass(frozen=True)
class Call:
    pos: int
    name: str  # lower-case
    args: tuple[Expr, ...]
    type: str = "?"


Expr = Literal | Column | Unary | Binary | Nary | IsNull | InList | Like | Case | Call


def literal_value(node: Expr) -> Any:
    """The value of a node the checker has made sure is a literal (a function's unit or
    digits, a LIKE pattern, a literal IN list)."""
    assert isinstance(node, Literal), node
    return node.value

# -- lexer -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><>|!=|<=|>=|\|\||[-+*/%=<>(),])
    """,
    re.VERBOSE | re.ASCII,
)
_KEYWORDS = frozenset({
    "AND", "OR", "NOT", "IS", "NULL", "IN", "LIKE", "CASE", "WHEN", "THEN", "ELSE", "END",
    "TRUE", "FALSE",
})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, name, keyword, op, end
    text: str
    pos: int
    value: Any = None


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            char = text[at]
            if char in "'\"":
                raise ExpressionError(f"unterminated {'string' if char == chr(39) else 'quoted name'}", at + 1)
            raise ExpressionError(f"unexpected character {char!r}", at + 1)
        kind = match.lastgroup
        word = match.group()
        pos = at + 1
        at = match.end()
        if kind == "space":
            continue
        if kind == "string":
            out.append(_Token("string", word, pos, word[1:-1].replace("''", "'")))
        elif kind == "quoted":
            out.append(_Token("name", word, pos, word[1:-1].replace('""', '"')))
        elif kind == "name" and word.upper() in _KEYWORDS:
            out.append(_Token("keyword", word.upper(), pos))
        elif kind == "name":
            out.append(_Token("name", word, pos, word))
        elif kind == "number":
            out.append(_Token("number", word, pos, _number(word, pos)))
        else:
            out.append(_Token("op", "<>" if word == "!=" else word, pos))
    out.append(_Token("end", "end of expression", len(text) + 1))
    return out


def _number(word: str, pos: int) -> int | float:
    if re.fullmatch(r"[0-9]+", word):
        whole = int(word)
        if whole > INT64_MAX + 1:  # INT64_MIN is written as -9223372036854775808
            raise ExpressionError("integer literal does not fit in 64 bits", pos)
        return whole
    value = float(word)
    if value in (float("inf"), float("-inf")):
        raise ExpressionError("number literal is too large for a double", pos)
    return value


# -- parser ------------------------------------------------------------------------------------

_COMPARISON = frozenset({"=", "<>", "<", "<=", ">", ">="})
# Binding power of infix operators (higher binds tighter).
_BP = {"OR": 1, "AND": 2, "IS": 4, **{op: 5 for op in _COMPARISON}, "IN": 6, "LIKE": 6, "NOT": 6,
       "||": 7, "+": 8, "-": 8, "*": 9, "/": 9, "%": 9}
_NOT_BP = 3
_UNARY_BP = 10


def parse_expression(text: str) -> Expr:
    """Parse an expression, or raise ExpressionError with the 1-based position of the problem."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    parser = _Parser(_tokens(text))
    tree = parser.expression(0)
    token = parser.peek()
    if token.kind != "end":
        raise ExpressionError(f"unexpected {token.text!r} (an operator or the end was expected)", token.pos)
    return tree


@dataclass
class _Parser:
    tokens: list[_Token]
    at: int = 0
    depth: int = 0
    depths: dict[int, int] = field(default_factory=dict)

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        token = self.peek()
        self.at += 1
        return token

    def is_(self, kind: str, text: str | None = None, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == kind and (text is None or token.text == text)

    def expect(self, kind: str, text: str, what: str) -> _Token:
        token = self.peek()
        if token.kind != kind or token.text != text:
            raise ExpressionError(f"expected {what}, found {token.text!r}", token.pos)
        return self.next()

    def node(self, tree: Expr, *children: Expr) -> Expr:
        """Record a node's depth and refuse trees deeper than MAX_DEPTH (evaluation recurses)."""
        depth = 1 + max((self.depths.get(id(c), 1) for c in children), default=0)
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels", tree.pos)
        self.depths[id(tree)] = depth
        return tree

    def expression(self, min_bp: int) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels", self.peek().pos)
        try:
            left = self.prefix()
            while True:
                token = self.peek()
                op = token.text if token.kind in ("op", "keyword") else None
                bp = _BP.get(op or "")
                if op is None or bp is None or bp <= min_bp:
                    return left
                left = self.infix(left, op, bp)
        finally:
            self.depth -= 1

    def infix(self, left: Expr, op: str, bp: int) -> Expr:
        token = self.next()
        if op in ("AND", "OR", "||"):
            operands = [left, self.expression(bp)]
            while self.is_(token.kind, op):
                self.next()
                operands.append(self.expression(bp))
            return self.node(Nary(token.pos, op, tuple(operands)), *operands)
        if op == "IS":
            negated = self.is_("keyword", "NOT")
            if negated:
                self.next()
            self.expect("keyword", "NULL", "NULL after IS")
            return self.node(IsNull(token.pos, left, negated), left)
        if op == "NOT":
            if not (self.is_("keyword", "IN") or self.is_("keyword", "LIKE")):
                raise ExpressionError("expected IN or LIKE after NOT", self.peek().pos)
            return self.membership(left, self.next(), negated=True)
        if op in ("IN", "LIKE"):
            return self.membership(left, token, negated=False)
        right = self.expression(bp)
        return self.node(Binary(token.pos, op, left, right), left, right)

    def membership(self, left: Expr, token: _Token, *, negated: bool) -> Expr:
        if token.text == "LIKE":
            pattern = self.expression(_BP["LIKE"])
            return self.node(Like(token.pos, left, pattern, negated), left, pattern)
        self.expect("op", "(", "'(' after IN")
        items = [self.expression(0)]
        while self.is_("op", ","):
            self.next()
            items.append(self.expression(0))
        self.expect("op", ")", "',' or ')' in the IN list")
        return self.node(InList(token.pos, left, tuple(items), negated), left, *items)

    def prefix(self) -> Expr:
        token = self.next()
        if token.kind == "number":
            return Literal(token.pos, token.value, "int" if isinstance(token.value, int) else "double")
        if token.kind == "string":
            return Literal(token.pos, token.value, "string")
        if token.kind == "name":
            if self.is_("op", "(") and token.text[0] != '"':
                return self.call(token)
            return Column(token.pos, token.value)
        if token.kind == "op" and token.text in ("-", "+"):
            operand = self.expression(_UNARY_BP)
            if token.text == "-" and isinstance(operand, Literal) and operand.type in ("int", "double"):
                value = -operand.value
                return Literal(token.pos, value, operand.type)
            return self.node(Unary(token.pos, token.text, operand), operand)
        if token.kind == "op" and token.text == "(":
            inner = self.expression(0)
            self.expect("op", ")", "')'")
            return inner
        if token.kind == "keyword":
            if token.text in ("TRUE", "FALSE"):
                return Literal(token.pos, token.text == "TRUE", "bool")
            if token.text == "NULL":
                return Literal(token.pos, None, "null")
            if token.text == "NOT":
                operand = self.expression(_NOT_BP)
                return self.node(Unary(token.pos, "NOT", operand), operand)
            if token.text == "CASE":
                return self.case(token)
        if token.kind == "end":
            raise ExpressionError("the expression ends where a value was expected", token.pos)
        raise ExpressionError(f"unexpected {token.text!r} (a value was expected)", token.pos)

    def call(self, name: _Token) -> Expr:
        self.next()  # "("
        args: list[Expr] = []
        if not self.is_("op", ")"):
            args.append(self.expression(0))
            while self.is_("op", ","):
                self.next()
                args.append(self.expression(0))
        self.expect("op", ")", "',' or ')' after a function argument")
        return self.node(Call(name.pos, name.text.lower(), tuple(args)), *args)

    def case(self, token: _Token) -> Expr:
        subject = None
        if not (self.is_("keyword", "WHEN") or self.is_("keyword", "END")):
            subject = self.expression(0)
        whens: list[tuple[Expr, Expr]] = []
        children: list[Expr] = []
        while self.is_("keyword", "WHEN"):
            when = self.next()
            condition = self.expression(0)
            if subject is not None:
                condition = self.node(Binary(when.pos, "=", subject, condition), subject, condition)
            self.expect("keyword", "THEN", "THEN")
            result = self.expression(0)
            whens.append((condition, result))
            children += [condition, result]
        if not whens:
            raise ExpressionError("CASE needs at least one WHEN … THEN …", self.peek().pos)
        otherwise = None
        if self.is_("keyword", "ELSE"):
            self.next()
            otherwise = self.expression(0)
            children.append(otherwise)
        self.expect("keyword", "END", "END to close CASE")
        return self.node(Case(token.pos, tuple(whens), otherwise), *children)
