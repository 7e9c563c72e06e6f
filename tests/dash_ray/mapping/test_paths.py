import pytest

from dash_ray.mapping.paths import ALL_KEYS, Index, Key, PathError, Wildcard, extract_all, parse_path

DOC = {
    "a": {"b": {"c": 1}},
    "odd name": {"x.y": 2, "it's": 3},
    "list": [10, 20, 30],
    "tags": [{"name": "red"}, {"other": 1}, {"name": None}, {"name": "blue"}],
    "grid": [[1, 2], [3], []],
    "obj": {"p": 1, "q": {"r": 2}},
    "null": None,
    "x-y": 5,
}


def get(path, doc=DOC):
    return parse_path(path).extract([doc])[0]


@pytest.mark.parametrize(("path", "steps"), [
    ("$", ()),
    ("$.a.b", (Key("a"), Key("b"))),
    ("$['odd name']", (Key("odd name"),)),
    ('$["odd name"]', (Key("odd name"),)),
    ("$['it\\'s']", (Key("it's"),)),
    ("$.list[0]", (Key("list"), Index(0))),
    ("$.list[-1]", (Key("list"), Index(-1))),
    ("$.tags[*].name", (Key("tags"), Wildcard(), Key("name"))),
    ("$.obj.*", (Key("obj"), Wildcard())),
    ("$.x-y", (Key("x-y"),)),
    ("$.température", (Key("température"),)),
])
def test_parse(path, steps):
    assert parse_path(path).steps == steps


@pytest.mark.parametrize(("path", "position", "words"), [
    ("a.b", 1, "starts with '$'"),
    ("", 1, "starts with '$'"),
    ("$.", 3, "expected a name"),
    ("$..a", 3, "expected a name"),
    ("$.a b", 4, "unexpected ' '"),
    ("$[", 2, "unclosed"),
    ("$[x]", 3, "expected an index"),
    ("$[1", 4, "expected ']'"),
    ("$['a", 3, "unterminated"),
    ("$.a[1.5]", 6, "expected ']'"),
    ("$.a(", 4, "unexpected '('"),
])
def test_parse_errors_have_positions(path, position, words):
    with pytest.raises(PathError) as err:
        parse_path(path)
    assert err.value.position == position
    assert words in err.value.message


def test_bounds():
    with pytest.raises(PathError, match="longer than 1024"):
        parse_path("$" + ".a" * 600)
    with pytest.raises(PathError, match="more than 32 steps"):
        parse_path("$" + ".a" * 33)


@pytest.mark.parametrize(("path", "value"), [
    ("$", DOC),
    ("$.a.b.c", 1),
    ("$.a.b", {"c": 1}),
    ("$['odd name']['x.y']", 2),
    ("$['odd name']['it\\'s']", 3),
    ("$.list[0]", 10),
    ("$.list[2]", 30),
    ("$.list[-1]", 30),
    ("$.list[-3]", 10),
    ("$.x-y", 5),
    # missing: a key on a non-object, an index on a non-array, out of range, JSON null
    ("$.nope", None),
    ("$.a.b.c.d", None),
    ("$.list[3]", None),
    ("$.list[-4]", None),
    ("$.a[0]", None),
    ("$.list.a", None),
    ("$.null", None),
    ("$.null.x", None),
])
def test_extract(path, value):
    assert get(path) == value


@pytest.mark.parametrize(("path", "value"), [
    ("$.tags[*].name", ["red", None, "blue"]),
    ("$.list[*]", [10, 20, 30]),
    ("$.grid[*][*]", [1, 2, 3]),
    ("$.grid[*][0]", [1, 3]),
    ("$.obj[*]", [1, {"r": 2}]),
    ("$.obj.*", [1, {"r": 2}]),
    ("$.grid[2][*]", None),  # an empty array matches nothing: missing
    ("$.nope[*]", None),
    ("$.tags[*].nope", None),
])
def test_wildcards_yield_lists_or_missing(path, value):
    assert get(path) == value


def test_extract_all_shares_prefixes_and_handles_non_dicts():
    docs = [DOC, {"a": None}, {"a": [1]}, {}]
    paths = [parse_path(p) for p in ("$.a.b.c", "$.a.b", "$.a", "$.list[-1]")]
    assert extract_all(paths, docs) == [
        [1, None, None, None],
        [{"c": 1}, None, None, None],
        [{"b": {"c": 1}}, None, [1], None],
        [30, None, None, None],
    ]


def test_top_key():
    assert parse_path("$.a.b").top_key == "a"
    assert parse_path("$['odd name']").top_key == "odd name"
    assert parse_path("$").top_key == ALL_KEYS
    assert parse_path("$[*].a").top_key == ALL_KEYS
    assert parse_path("$[0]").top_key is None
    assert parse_path("$.tags[*]").wildcard_at == 7
