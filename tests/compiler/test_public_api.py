"""The public surfaces of aibrix_spec and compiler are exactly their __all__ lists."""

from __future__ import annotations

import inspect

import pytest

import aibrix_spec
import compiler


@pytest.mark.parametrize("module", [aibrix_spec, compiler], ids=lambda m: m.__name__)
def test_all_names_exist_and_are_unique(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert len(names) == len(set(names)), "duplicate names in __all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == []


def test_every_spec_model_of_the_stack_is_exported() -> None:
    # Every model class reachable from InferenceStack must be importable from aibrix_spec.
    seen: set[type] = set()

    def walk(model: type) -> None:
        if model in seen:
            return
        seen.add(model)
        for field in model.model_fields.values():  # type: ignore[attr-defined]
            for candidate in _classes(field.annotation):
                walk(candidate)

    walk(aibrix_spec.InferenceStack)
    exported = {getattr(aibrix_spec, n) for n in aibrix_spec.__all__ if inspect.isclass(getattr(aibrix_spec, n))}
    # Routing plugin parameters are the routing module's own surface (aibrix_spec.routing).
    unexported = sorted(c.__name__ for c in seen - exported if c.__module__ != "aibrix_spec.routing")
    assert unexported == []


def _classes(annotation: object) -> list[type]:
    import typing

    from pydantic import BaseModel

    out: list[type] = []
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        out.append(annotation)
    for arg in typing.get_args(annotation):
        out += _classes(arg)
    return out


def test_compiler_exports_the_documented_surface() -> None:
    assert set(compiler.__all__) == {
        "DEFAULT_KUBE_VERSION",
        "AibrixError",
        "CompilerBug",
        "Diagnostic",
        "NotCompiledYetError",
        "SpecError",
        "SpecReferenceError",
        "SpecSyntaxError",
        "SpecValidationError",
        "UsageError",
        "compile_stack",
        "render_diagnostics",
    }
