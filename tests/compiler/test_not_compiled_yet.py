"""Features without a renderer validate, then fail with one clear error each, never dropped.

Every entry of NOT_COMPILED_YET must be detected by a case below; when a renderer lands
and its entry is deleted, delete its case here too (the coverage test says so).
"""

from __future__ import annotations

from typing import Any

import pytest

from compiler import NotCompiledYetError, compile_stack
from compiler.pipeline import resolve_stack
from compiler.render import NOT_COMPILED_YET, RENDERERS

from .helpers import dump, minimal

# Every spec feature compiles today; a future pending feature adds its case here.
CASES: dict[str, tuple[dict[str, Any], tuple[str | int, ...]]] = {}


def test_every_pending_feature_has_a_case() -> None:
    assert sorted(f.field for f in NOT_COMPILED_YET) == sorted(CASES)


def test_core_is_registered() -> None:
    assert [r.name for r in RENDERERS][0] == "core"


@pytest.mark.parametrize("field", sorted(CASES))
def test_pending_feature_fails_with_one_clear_error(field: str) -> None:
    data, path = CASES[field]
    feature = next(f for f in NOT_COMPILED_YET if f.field == field)
    resolve_stack(dump(data), source_name="t.yaml")  # valid as a spec
    with pytest.raises(NotCompiledYetError) as info:
        compile_stack(dump(data), source_name="t.yaml")
    mine = [d for d in info.value.diagnostics if d.message.startswith(f"{field} is valid")]
    (d,) = mine
    assert d.path == path and d.line > 0
    assert d.message == f"{field} is valid but not compiled yet: the {feature.renderer} renderer is not in this version"
    assert len(info.value.diagnostics) == 1


def test_disabled_sections_compile() -> None:
    data = minimal(gateway={"enabled": False}, kvCache={"enabled": False}, optimizer={"enabled": False})
    assert "kustomization.yaml" in compile_stack(dump(data), source_name="t.yaml")

