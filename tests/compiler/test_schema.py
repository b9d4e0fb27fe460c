"""The committed JSON Schema matches the spec, documents every field and accepts the examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml

from compiler.schema import schema_text, stack_schema

from .helpers import EXAMPLES, REPO

COMMITTED = REPO / "schemas" / "inferencestack.schema.json"


def test_committed_schema_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == schema_text(), (
        "schemas/inferencestack.schema.json is stale; regenerate it with: "
        "aibrix-compile schema > schemas/inferencestack.schema.json"
    )


def _properties(node: Any, where: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{where}.{name}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{where}.{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{where}[{i}]")


def test_every_field_has_a_description() -> None:
    undocumented = sorted({w for w, prop in _properties(stack_schema()) if not prop.get("description")})
    assert undocumented == []


def test_unknown_fields_are_forbidden_in_every_object() -> None:
    schema = stack_schema()
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("additionalProperties") is False, name


@pytest.mark.parametrize("stack", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_validate_against_the_schema(stack: Any) -> None:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(stack.read_text(encoding="utf-8")))
