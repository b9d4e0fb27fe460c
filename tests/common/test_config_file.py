"""The shared YAML config loader: line-numbered problems, hints, and the plain-data readers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime_components.common.config_file import (
    ConfigFileError,
    load_model,
    load_model_file,
    parse_yaml,
    read_yaml_file,
)


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    policy: Literal["fast", "slow"] = "fast"
    size_gb: int = Field(1, ge=1, alias="sizeGb")


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    inner: Inner = Inner()

    @model_validator(mode="after")
    def _rule(self) -> Doc:
        if self.name == "slow-fast" and self.inner.policy == "fast":
            raise ValueError("inner.policy must be slow for slow-fast")
        return self


HINTS = {"policy": "fast or slow", "name": "any short name"}

CASES = [
    # (name, text, exact str() of the error)
    ("missing field", "inner: {}\n",
     "error: d.yaml:1:1: name\n  missing required field `name`\n      1 | inner: {}\n        | ^\n  hint: any short name"),
    ("literal with its own hint", "name: a\ninner: {policy: medium}\n",
     "error: d.yaml:2:17: inner.policy\n  `medium` is not allowed here\n      2 | inner: {policy: medium}\n"
     "        |                 ^\n  hint: expected one of: 'fast' or 'slow'"),
    ("typo", "name: a\ninner: {sizeGB: 2}\n",
     "error: d.yaml:2:9: inner.sizeGB\n  unknown field `sizeGB`\n      2 | inner: {sizeGB: 2}\n        |         ^\n"
     "  hint: did you mean `sizeGb`?"),
    ("rule names a path: point there, no field hint", "name: slow-fast\ninner: {policy: fast}\n",
     "error: d.yaml:2:17: inner.policy\n  inner.policy must be slow for slow-fast\n      2 | inner: {policy: fast}\n"
     "        |                 ^"),
    ("not a mapping", "- a\n",
     "error: d.yaml:1:1\n  expected a mapping of Doc fields at the top\n      1 | - a\n        | ^\n  hint: put `name:` at the top"),
    ("duplicate key", "name: a\nname: b\n",
     "error: d.yaml:2:1: name\n  duplicate key `name`\n      2 | name: b\n        | ^\n  hint: keep one; YAML would silently use the last"),
    ("syntax", "name: [a\n",
     "error: d.yaml:2:1\n  YAML syntax error: expected ',' or ']', but got '<stream end>'\n"
     "  hint: check indentation and quoting on this line"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_problems_point_at_the_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_model(text, Doc, source="d.yaml", top_hint="put `name:` at the top", field_hints=HINTS)
    assert str(caught.value) == expected
    assert caught.value.render() == expected + "\n"


def test_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("name: a\ninner: {policy: slow, sizeGb: 3}\n", encoding="utf-8")
    doc = load_model_file(path, Doc)
    assert (doc.name, doc.inner.policy, doc.inner.size_gb) == ("a", "slow", 3)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file or directory"), (b"name: \xff\xfe\n", "it is not UTF-8 text")],
    ids=["absent", "not-utf8"],
)
def test_unreadable_file_names_the_path_and_the_hint(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "d.yaml"
    if content is not None:
        path.write_bytes(content)
    for load in (lambda: load_model_file(path, Doc, read_hint="pass --config FILE"),
                 lambda: read_yaml_file(path, read_hint="pass --config FILE")):  # fmt: skip
        with pytest.raises(ConfigFileError) as caught:
            load()
        assert str(caught.value) == f"error: {path}\n  cannot read the file: {reason}\n  hint: pass --config FILE"


@pytest.mark.parametrize(("text", "data"), [("", None), ("a: [1, 2]\n", {"a": [1, 2]}), ("[x]\n", ["x"])])
def test_parse_yaml_gives_plain_data(text: str, data: object) -> None:
    assert parse_yaml(text, source="f.yaml") == data


def test_parse_yaml_refuses_duplicate_keys_and_control_characters() -> None:
    with pytest.raises(ConfigFileError) as caught:
        parse_yaml("a:\n  b: 1\n  b: 2\n", source="f.yaml")
    assert str(caught.value).startswith("error: f.yaml:3:3: a.b\n  duplicate key `b`\n")
    with pytest.raises(ConfigFileError) as caught:
        parse_yaml("a: 1\x07\n", source="f.yaml")
    assert str(caught.value).startswith("error: f.yaml\n  YAML syntax error: unacceptable character #x0007")


def test_a_long_line_is_shown_around_the_column() -> None:
    text = '{"name": "a", ' + ", ".join(f'"k{i}": {i}' for i in range(40)) + "}"
    with pytest.raises(ConfigFileError) as caught:
        load_model(text, Doc, source="d.json")
    first = caught.value.problems[20]
    rendered = caught.value.render().split("\n")
    index = rendered.index(f"error: d.json:1:{first.column}: {first.path}")
    shown, caret = rendered[index + 2], rendered[index + 3]
    assert shown.startswith("      1 | ...") and shown.endswith("...") and len(shown) <= 120
    # The caret sits under the field's name inside the window.
    assert shown[caret.index("^"):].startswith(f'"{first.path}"')
