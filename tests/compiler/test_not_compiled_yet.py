"""Features without a renderer validate, then fail with one clear error each, never dropped.

Every entry of NOT_COMPILED_YET must be detected by a case below; when a renderer lands
and its entry is deleted, delete its case here too (the coverage test says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from compiler import NotCompiledYetError, compile_stack
from compiler.defaults import ResolvedStack
from compiler.pipeline import resolve_stack
from compiler.render import NOT_COMPILED_YET, RENDERERS, PendingFeature

from .helpers import dump, minimal

# Every spec feature compiles today; a future pending feature adds its case here.
CASES: dict[str, tuple[dict[str, Any], tuple[str | int, ...]]] = {}


def test_every_pending_feature_has_a_case() -> None:
    assert sorted(f.field for f in NOT_COMPILED_YET) == sorted(CASES)


def test_core_is_registered() -> None:
    assert [r.name for r in RENDERERS][0] == "core"


def test_a_pending_feature_fails_with_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate itself, with a feature registered for the test (the table is empty today)."""
    import compiler.render as render

    def find(stack: ResolvedStack) -> Iterator[tuple[str | int, ...]]:
        for m in stack.models:
            if m.spec.adapters:
                yield ("spec", "models", m.index, "adapters")

    feature = PendingFeature("models[].adapters", "test-only", find)
    monkeypatch.setattr(render, "NOT_COMPILED_YET", (feature,))
    data = minimal(models=[{"name": "m", "source": {"uri": "hf://o/m"}, "placement": {"pools": ["l4"]},
                            "adapters": [{"name": "a", "source": {"uri": "hf://o/a"}}]}])  # fmt: skip
    resolve_stack(dump(data), source_name="t.yaml")  # valid as a spec
    with pytest.raises(NotCompiledYetError) as info:
        compile_stack(dump(data), source_name="t.yaml")
    (d,) = info.value.diagnostics
    assert d.path == ("spec", "models", 0, "adapters") and d.line > 0
    assert d.message == "models[].adapters is valid but not compiled yet: the test-only renderer is not in this version"


def test_disabled_sections_compile() -> None:
    data = minimal(gateway={"enabled": False}, kvCache={"enabled": False}, optimizer={"enabled": False})
    assert "kustomization.yaml" in compile_stack(dump(data), source_name="t.yaml")

