"""Transformer: put every namespaced object in the stack's namespace.

Cluster-scoped kinds (:data:`compiler.manifest.CLUSTER_SCOPED_KINDS`) get no namespace.
A renderer that already set a namespace keeps it only if it is the stack's: anything else
is a bug in that renderer.
"""

from __future__ import annotations

import copy

from ..errors import CompilerBug
from ..manifest import CLUSTER_SCOPED_KINDS, Manifest
from ..plan import Plan

__all__ = ["set_namespace"]


def set_namespace(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    out = []
    for m in manifests:
        body = copy.deepcopy(m.body)
        meta = body["metadata"]
        if m.kind in CLUSTER_SCOPED_KINDS:
            meta.pop("namespace", None)
        else:
            if meta.get("namespace", plan.namespace) != plan.namespace:
                raise CompilerBug("transform", f"{m.kind} {m.name} was rendered into namespace {meta['namespace']}")
            meta["namespace"] = plan.namespace
        out.append(Manifest(m.component, body))
    return out
