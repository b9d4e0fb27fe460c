"""Transformer: the labels of DESIGN.md section 4 on every object and pod template.

Added to ``metadata.labels`` and to the labels of every pod template (a workload's
``spec.template``, a RayCluster's head and worker templates; never to selectors, which
renderers own and which must stay immutable)::

    app.kubernetes.io/component   the manifest's component (engine, gateway, ...)
    app.kubernetes.io/instance    the stack name
    app.kubernetes.io/part-of     aibrix
    app.kubernetes.io/managed-by  aibrix-compile
    + metadata.labels of the stack

Labels a renderer set win over the stack's extra labels; the result is sorted by key.
"""

from __future__ import annotations

import copy
from typing import Any

from ..manifest import Manifest, pod_templates
from ..plan import Plan

__all__ = ["add_labels", "common_labels"]

PART_OF = "aibrix"
MANAGED_BY = "aibrix-compile"


def common_labels(plan: Plan, component: str) -> dict[str, str]:
    return {
        **dict(plan.extra_labels),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": plan.stack_name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def _merge(existing: dict[str, str] | None, common: dict[str, str]) -> dict[str, str]:
    return dict(sorted({**common, **(existing or {})}.items()))


def add_labels(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    out = []
    for m in manifests:
        body: dict[str, Any] = copy.deepcopy(m.body)
        common = common_labels(plan, m.component)
        body["metadata"]["labels"] = _merge(body["metadata"].get("labels"), common)
        for template in pod_templates(body):
            meta = template.setdefault("metadata", {})
            meta["labels"] = _merge(meta.get("labels"), common)
        out.append(Manifest(m.component, body))
    return out
