"""parse: positions of keys and values, and the syntax errors PyYAML alone would miss."""

from __future__ import annotations

import pytest

from compiler.errors import SpecSyntaxError
from compiler.parse import parse

TEXT = """\
a: 1
b:
  - x: two
    y: [1, 2]
c: {d: e}
"""


@pytest.mark.parametrize(
    "path, prefer_key, expected",
    [
        (("a",), False, (1, 4)),
        (("a",), True, (1, 1)),
        (("b", 0, "x"), False, (3, 8)),
        (("b", 0, "y", 1), False, (4, 12)),
        (("c", "d"), False, (5, 8)),
        (("c", "d"), True, (5, 5)),
        (("c", "missing"), False, (5, 1)),  # falls back to the key of the closest written ancestor
        (("nothing", 3), False, (1, 1)),
    ],
)
def test_positions(path: tuple[str | int, ...], prefer_key: bool, expected: tuple[int, int]) -> None:
    assert parse(TEXT, source_name="t").position(path, prefer_key=prefer_key) == expected


def test_data_matches_a_plain_yaml_load() -> None:
    import yaml

    assert parse(TEXT, source_name="t").data == yaml.safe_load(TEXT)


@pytest.mark.parametrize(
    "text, message, line, column",
    [
        ("a: 1\na: 2\n", 'duplicate key "a" (first written on line 1)', 2, 1),
        ("a: [1\n", "invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence)", 2, 1),
        ("", "the file is empty", 1, 1),
        ("a: 1\n---\nb: 2\n", "the file holds 2 YAML documents", 3, 1),
        ("- 1\n", "the document is not a mapping", 1, 1),
        ("base: &b {x: 1}\nc:\n  <<: *b\n", "YAML merge keys (<<) are not supported", 3, 3),
        ("? [a]\n: 1\n", "a key is a list or mapping", 1, 3),
        ("a: 2024-13-45\n", "cannot read this value: month must be in 1..12", 1, 4),
        ('a: !!binary "zz"\n', "cannot read this value: failed to decode base64 data: Incorrect padding", 1, 4),
        ("a: !custom x\n", "cannot read this value: could not determine a constructor for the tag '!custom'", 1, 4),
    ],
)
def test_syntax_errors(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        parse(text, source_name="t")
    (diagnostic,) = info.value.diagnostics
    assert (diagnostic.message, diagnostic.line, diagnostic.column) == (message, line, column)


def test_aliases_are_expanded_with_positions() -> None:
    doc = parse("a: &x {k: v}\nb: *x\n", source_name="t")
    assert doc.data == {"a": {"k": "v"}, "b": {"k": "v"}}
    assert doc.position(("b",)) == (1, 4)  # an alias points at its anchor's definition
