"""The pass order, written once: parse -> validate -> defaults -> gate -> plan -> render
-> transform -> serialize.

Every pass is pure (no I/O, environment, clock or randomness). Passes after ``parse``
report errors by path; :func:`_positioned` attaches each path's line and column from the
source map, so every error the user sees points into their file. Anything that is not one
of our errors escaping a pass is wrapped as a :class:`CompilerBug` naming that pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from .defaults import ResolvedStack, apply_defaults
from .errors import AibrixError, CompilerBug, SpecError, UsageError
from .kube_version import DEFAULT_KUBE_VERSION, parse_kube_version
from .manifest import Manifest
from .parse import SourceDoc, parse
from .plan import Plan, plan
from .render import check_compilable, render
from .serialize import serialize
from .transforms import transform
from .validate import validate

__all__ = ["compile_manifests", "compile_stack", "resolve_stack"]

T = TypeVar("T")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _positioned(error: SpecError, doc: SourceDoc) -> SpecError:
    diagnostics = []
    for d in error.diagnostics:
        if d.line:
            diagnostics.append(d)
            continue
        # Point at the key for unknown/missing fields and for whole sections (a mapping or
        # list value), at the value otherwise.
        prefer_key = d.message.startswith(("unknown field", "missing required field")) or doc.is_container(d.path)
        diagnostics.append(d.at(*doc.position(d.path, prefer_key=prefer_key)))
    return error.with_positions(diagnostics, doc.source_name)


def _run(pass_name: str, doc: SourceDoc, step: Callable[[], T]) -> T:
    try:
        return step()
    except SpecError as exc:
        raise _positioned(exc, doc) from None
    except AibrixError:
        raise
    except Exception as exc:  # a bug in the pass: never show the user a traceback
        raise CompilerBug(pass_name, f"{type(exc).__name__}: {exc}") from exc


def _check_namespace_option(namespace: str | None) -> None:
    # The option reaches PromQL, Envoy's config and JSON flags like any spec name does.
    if namespace is not None and (len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace)):
        shown = namespace if len(namespace) <= 70 else namespace[:67] + "..."
        raise UsageError(
            f'--namespace "{shown}" is not a valid namespace; expected a DNS-1123 label: lowercase letters, '
            "digits and '-', starting and ending with a letter or digit, at most 63 characters"
        )


def resolve_stack(text: str, *, source_name: str, namespace: str | None = None) -> tuple[SourceDoc, ResolvedStack]:
    """parse -> validate -> defaults: the typed stack with every default applied."""
    _check_namespace_option(namespace)
    doc = parse(text, source_name=source_name)
    stack = _run("validate", doc, lambda: validate(doc))
    resolved = _run("defaults", doc, lambda: apply_defaults(stack, namespace=namespace))
    return doc, resolved


def compile_manifests(
    text: str,
    *,
    source_name: str,
    kube_version: str = DEFAULT_KUBE_VERSION,
    namespace: str | None = None,
    allow_pending: bool = False,
) -> tuple[Plan, list[Manifest]]:
    """Everything up to and including the transformers.

    ``allow_pending`` skips the not-compiled-yet gate, for benchmarks and for renderer
    development only: features without a renderer are then simply absent from the output.
    """
    version = parse_kube_version(kube_version)
    doc, resolved = resolve_stack(text, source_name=source_name, namespace=namespace)
    if not allow_pending:
        _run("gate", doc, lambda: check_compilable(resolved))
    the_plan = _run("plan", doc, lambda: plan(resolved, kube_version=version))
    rendered = _run("render", doc, lambda: render(the_plan))
    return the_plan, _run("transform", doc, lambda: transform(the_plan, rendered))


def compile_stack(
    text: str, *, source_name: str, kube_version: str = DEFAULT_KUBE_VERSION, namespace: str | None = None
) -> dict[str, str]:
    """Compile one InferenceStack text to ``{relative path: YAML}`` (plus kustomization.yaml).

    >>> files = compile_stack(open("examples/stacks/quickstart.yaml").read(), source_name="quickstart.yaml")
    >>> "kustomization.yaml" in files
    True
    """
    _plan, manifests = compile_manifests(text, source_name=source_name, kube_version=kube_version, namespace=namespace)
    return serialize(manifests)
