"""The renderers' contract, checked on their source: a family reads only the plan, imports only
shared builders (never another family, never the spec passes), and raises no spec error (user
errors are found before rendering, by validate and plan)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from compiler.render import RENDERERS

RENDER = Path(__file__).resolve().parents[2] / "compiler" / "render"
#: Modules of compiler/render/ that every family may use.
SHARED_BUILDERS = {"component_parts", "engine_pod", "pod_features", "envoy_bootstrap", "gateway_api"}
#: compiler modules a renderer may import (relative to the compiler package).
ALLOWED_COMPILER = {"plan", "plan.names", "plan.models", "plan.components", "manifest", "serialize"}
FORBIDDEN_NAMES = {"SpecError", "SpecValidationError", "SpecReferenceError", "Diagnostic"}


def _modules() -> list[Path]:
    return sorted(p for p in RENDER.glob("*.py") if p.stem != "__init__")


def _relative_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(level, module, names) of every relative import in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.level, node.module or "", [a.name for a in node.names])
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]


def test_every_family_is_a_module_here() -> None:
    families = {r.name.replace("-", "") for r in RENDERERS}
    stems = {p.stem for p in _modules()}
    assert families <= stems, families - stems
    assert not (families & SHARED_BUILDERS)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.stem)
def test_renderers_import_only_the_plan_and_shared_builders(path: Path) -> None:
    for level, module, names in _relative_imports(path):
        if level == 1:  # from .x import ... / from . import x
            targets = {module} if module else set(names)
            assert targets <= SHARED_BUILDERS, f"{path.name} imports {targets - SHARED_BUILDERS} (another renderer)"
        else:
            assert module in ALLOWED_COMPILER, f"{path.name} imports compiler.{module}"
        assert not (set(names) & FORBIDDEN_NAMES), f"{path.name} imports {set(names) & FORBIDDEN_NAMES}: spec errors belong to the plan"
