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
        ("a: 2024-13-45\n", "2024-13-45 means an invalid timestamp in YAML 1.1 but text in YAML 1.2", 1, 4),
        ('a: !!binary "zz"\n', "the YAML tag !!binary is not supported", 1, 4),
        ("a: !custom x\n", "the YAML tag !custom is not supported", 1, 4),
        ("a: !custom {b: 1}\n", "the YAML tag !custom is not supported", 1, 4),
        ("a: !!set {b: null}\n", "the YAML tag !!set is not supported", 1, 4),
        ("a: &x [*x]\n", "a recursive YAML alias", 1, 8),
        ("a: *nothing\n", "the YAML alias *nothing names no anchor", 1, 4),
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


# --- hostile and ambiguous input (issues 13 and 22): refused with a position, never slow ---


def _refused(text: str) -> tuple[str, int, int]:
    with pytest.raises(SpecSyntaxError) as info:
        parse(text, source_name="t")
    first = info.value.diagnostics[0]
    return first.message, first.line, first.column


def alias_bomb(levels: int = 10, reuse: int = 9) -> str:
    """The "billion laughs" document: each level re-uses the one before ``reuse`` times."""
    lines = ['l0: &l0 "lol"']
    for k in range(1, levels):
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * reuse) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_bound() -> None:
    from compiler.limits import MAX_VALUES

    message, line, _column = _refused(alias_bomb())
    assert message == f"the document builds more than {MAX_VALUES} values"
    assert line == 6  # at l5 the values pass 30,000 (9^5 = 59,049)


def test_aliases_within_the_bound_still_work() -> None:
    doc = parse(alias_bomb(levels=4, reuse=3), source_name="t")
    assert doc.data["l2"] == [["lol"] * 3] * 3 and len(doc.data["l3"]) == 3


@pytest.mark.parametrize("text", ["a: " + "[" * 100_000 + "]" * 100_000 + "\n", "a:\n" + "".join(f"{' ' * i}k:\n" for i in range(1, 600))])
def test_deep_nesting_is_refused_before_libyaml_recursion(text: str) -> None:
    from compiler.limits import MAX_DEPTH

    message, line, _column = _refused(text)
    assert message == f"the document nests deeper than {MAX_DEPTH} levels"
    assert line >= 1


def test_a_file_over_the_size_limit_is_refused_with_the_line_where_it_crosses() -> None:
    from compiler.limits import MAX_BYTES

    text = ("# " + "x" * 97 + "\n") * (MAX_BYTES // 100 + 2)  # 100 characters a line
    message, line, _column = _refused(text)
    assert message == "the file is larger than 1 MiB"
    assert line == MAX_BYTES // 100 + 1


@pytest.mark.parametrize(
    "scalar, message",
    [
        ("on", "on means the boolean true in YAML 1.1 but text in YAML 1.2"),
        ("No", "No means the boolean false in YAML 1.1 but text in YAML 1.2"),
        ("010000", "010000 means the integer 4096 in YAML 1.1 but the integer 10000 in YAML 1.2"),
        ("1:08:16", "1:08:16 means the integer 4096 in YAML 1.1 but text in YAML 1.2"),
        ("2024-01-01", "2024-01-01 means a date in YAML 1.1 but text in YAML 1.2"),
        (".inf", ".inf is not a finite number"),
        ("-.Inf", "-.Inf is not a finite number"),
        (".nan", ".nan is not a finite number"),
        ("1e999", "1e999 is not a finite number"),
        ("99999999999999999999", "the integer 99999999999999999999 is out of range"),
    ],
)
def test_ambiguous_or_non_finite_scalars_are_refused(scalar: str, message: str) -> None:
    assert _refused(f"a: {scalar}\n") == (message, 1, 4)


@pytest.mark.parametrize(
    "text, value",
    [
        ('a: "on"\n', "on"),
        ("a: '010000'\n", "010000"),
        ("a: !!str 1:08:16\n", "1:08:16"),
        ("a: 0x1F\n", 31),
        ("a: 1.5\n", 1.5),
        ("a: true\n", True),
        ("a: ~\n", None),
        ("a: |\n  .inf\n", ".inf\n"),
    ],
)
def test_quoted_and_unambiguous_scalars_are_read_the_yaml_1_2_way(text: str, value: object) -> None:
    assert parse(text, source_name="t").data == {"a": value}


def test_non_utf8_bytes_are_an_invalid_stack_with_their_line() -> None:
    from compiler.parse import decode

    with pytest.raises(SpecSyntaxError) as info:
        decode(b"a: 1\nb: caf\xe9\n", source_name="t")
    (d,) = info.value.diagnostics
    assert (d.message, d.line, d.column) == ("the file is not UTF-8 text (byte 0xe9 at offset 11)", 2, 7)
    assert decode(b"\xef\xbb\xbfa: 1\n", source_name="t") == "a: 1\n"  # a UTF-8 BOM is fine
