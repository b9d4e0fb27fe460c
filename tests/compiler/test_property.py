"""Property: whatever a mutated stack looks like, the compiler either compiles it or raises
its own SpecError with positioned, renderable diagnostics: never anything else (not even
CompilerBug, which would mean a pass crashed).

Mutations work on the data of valid stacks (delete, replace with a value of another type,
rename a key to a near-miss, add an unknown key, duplicate a list item) and on the raw text
(delete or insert a slice). Bounded: 100 examples each, no deadline (the machine is shared).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import SpecError, compile_stack, render_diagnostics

from .helpers import EXAMPLES, MINIMAL, dump

SEEDS: list[dict[str, Any]] = [MINIMAL] + [
    yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))
]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "on", "1.0", "hf://", "pvc://", "s3://x", "nvidia-l4", "l20", "kpa", "Gi", "-1", "hf_" + "a" * 30]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


# Text that YAML treats specially: bad dates, tags, anchors, merge keys, complex keys, tabs.
SNIPPETS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["2024-13-45", " !!binary zz", " !tag x", " &a", " *a", "\n<<: *a\n", "{", "\n? [a]\n: 1\n", "\t", ": :", "%YAML 1.1\n"]),
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, path + (i,))
    return out


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        root = root[part]
    return root


@st.composite
def mutated_stacks(draw: st.DrawFn) -> str:
    data = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        action = draw(st.sampled_from(["delete", "replace", "rename", "add", "duplicate"]))
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(VALUES)
        elif action == "rename" and isinstance(parent, dict):
            parent[str(key)[:-1] or "x"] = parent.pop(key)
        elif action == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
        elif action == "duplicate" and isinstance(parent[key], list) and parent[key]:
            parent[key].append(copy.deepcopy(parent[key][0]))
    return dump(data)


def _check(text: str) -> None:
    try:
        files = compile_stack(text, source_name="fuzz.yaml")
    except SpecError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert d.line >= 1 and d.column >= 1 and d.message
        rendered = render_diagnostics(exc.diagnostics, source_name="fuzz.yaml", text=text)
        assert rendered.startswith("error: fuzz.yaml:")
    else:
        assert "kustomization.yaml" in files


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_stacks())
def test_mutated_stacks_give_only_our_errors(text: str) -> None:
    _check(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.integers(min_value=0, max_value=4000), st.integers(min_value=0, max_value=40), SNIPPETS)
def test_text_edits_give_only_our_errors(seed: dict[str, Any], start: int, length: int, insert: str) -> None:
    text = dump(seed)
    start = min(start, len(text))
    _check(text[:start] + insert + text[start + length :])
