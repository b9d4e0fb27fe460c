"""Pass 5, render: Plan -> list[Manifest], one module per target family.

The extension point, in two tables:

- :data:`RENDERERS` lists every renderer family (name, function). A family is a module
  ``compiler/render/<family>.py`` exposing ``render(plan) -> list[Manifest]``; it reads only
  the plan and imports only shared builders (``component_parts``, ``engine_pod``,
  ``pod_features``, ``envoy_bootstrap``, ``gateway_api``), never another family. A family
  may also register ``amend(plan, manifests) -> manifests``: it runs after every family
  rendered and may add objects (observability monitors every scrapable Service). Features
  of engine pods are not amendments: they are pod mutators (:mod:`.pod_features`) applied
  by the one engine pod builder (:mod:`.engine_pod`) to every engine pod.
- :data:`NOT_COMPILED_YET` lists the spec features that validate but have no renderer
  yet. Compiling a stack that uses one fails with ONE clear error naming the field and
  its line (never a silently dropped section).

Enabling a feature: add the renderer module, register it in RENDERERS, delete its entry
from NOT_COMPILED_YET, then regenerate golden files (``pytest tests/golden --update-golden``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..defaults import ResolvedStack
from ..errors import Diagnostic, NotCompiledYetError
from ..manifest import Manifest
from ..plan import Plan
from . import adapters, autoscaling, core, dashboards, diagnostics, gateway, kuberay, kvcache, observability, optimizer

__all__ = ["NOT_COMPILED_YET", "RENDERERS", "PendingFeature", "RendererFamily", "check_compilable", "render"]

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class RendererFamily:
    """One renderer module, registered by name."""

    name: str
    render: Callable[[Plan], list[Manifest]]
    amend: Callable[[Plan, list[Manifest]], list[Manifest]] | None = None


@dataclass(frozen=True)
class PendingFeature:
    """A validated spec feature whose renderer does not exist yet."""

    field: str  #: the field as users write it, e.g. spec.gateway
    renderer: str  #: the renderer family that will compile it
    find: Callable[[ResolvedStack], Iterator[Path]]  #: paths in a stack that use it


#: Every renderer family, in the order they run (output order is decided by sorting).
RENDERERS: tuple[RendererFamily, ...] = (
    RendererFamily("core", core.render),
    RendererFamily("kuberay", kuberay.render),
    RendererFamily("adapters", adapters.render),
    RendererFamily("gateway", gateway.render),
    RendererFamily("kv-cache", kvcache.render),
    RendererFamily("autoscaling", autoscaling.render),
    RendererFamily("optimizer", optimizer.render),
    RendererFamily("diagnostics", diagnostics.render),
    RendererFamily("dashboards", dashboards.render),
    RendererFamily("observability", observability.render, observability.amend),  # last: sees every Service
)


#: Spec features that validate but are not compiled yet (delete an entry when its renderer lands).
NOT_COMPILED_YET: tuple[PendingFeature, ...] = ()


def check_compilable(stack: ResolvedStack) -> None:
    """Raise NotCompiledYetError naming every use of a feature without a renderer."""
    problems = [
        Diagnostic(
            path,
            f"{feature.field} is valid but not compiled yet: the {feature.renderer} renderer is not in this version",
            expected="a stack without this feature until its renderer lands",
            hint="remove it (or set enabled: false on a section) to compile the rest of the stack",
        )
        for feature in NOT_COMPILED_YET
        for path in feature.find(stack)
    ]
    if problems:
        raise NotCompiledYetError(problems)


def render(plan: Plan) -> list[Manifest]:
    """Every registered family's objects, in registry order, then each family's amend step."""
    manifests = [manifest for family in RENDERERS for manifest in family.render(plan)]
    for family in RENDERERS:
        if family.amend is not None:
            manifests = family.amend(plan, manifests)
    return manifests
