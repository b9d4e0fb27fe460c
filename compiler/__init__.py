"""aibrix-compile: InferenceStack YAML -> Kubernetes manifests, as a pipeline of pure passes.

Public surface (guarded by a test): :func:`compile_stack` for in-memory use, the error
hierarchy of :mod:`compiler.errors`, and the default target version. The command line is
:mod:`compiler.cli`. Imports: aibrix_spec, pydantic, PyYAML, jsonschema and the
standard library only.
"""

from __future__ import annotations

from .errors import (
    AibrixError,
    CompilerBug,
    Diagnostic,
    NotCompiledYetError,
    SpecError,
    SpecReferenceError,
    SpecSyntaxError,
    SpecValidationError,
    UsageError,
    render_diagnostics,
)
from .kube_version import DEFAULT_KUBE_VERSION
from .pipeline import compile_stack

__all__ = [
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
]
