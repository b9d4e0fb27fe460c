"""Transformers run last: canonical key order inside objects, then object order.

- Top-level keys: apiVersion, kind, metadata, spec, then the rest in renderer order;
  metadata keys: name, namespace, labels, annotations, then the rest.
- Objects sorted by (kind priority, namespace, name) from :data:`compiler.manifest.KIND_ORDER`.
  Two objects with the same kind, namespace and name are a renderer bug.
"""

from __future__ import annotations

from typing import Any

from ..errors import CompilerBug
from ..manifest import Manifest
from ..plan import Plan

__all__ = ["order_keys", "sort_manifests"]

_TOP = ("apiVersion", "kind", "metadata", "spec")
_META = ("name", "namespace", "labels", "annotations")


def _ordered(mapping: dict[str, Any], first: tuple[str, ...]) -> dict[str, Any]:
    head = {k: mapping[k] for k in first if k in mapping}
    return {**head, **{k: v for k, v in mapping.items() if k not in head}}


def order_keys(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    out = []
    for m in manifests:
        body = _ordered(m.body, _TOP)
        body["metadata"] = _ordered(body["metadata"], _META)
        out.append(Manifest(m.component, body))
    return out


def sort_manifests(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    ordered = sorted(manifests, key=lambda m: m.sort_key)
    for a, b in zip(ordered, ordered[1:]):
        if a.sort_key == b.sort_key:
            raise CompilerBug("transform", f"two objects named {a.kind} {a.namespace}/{a.name}")
    files = [m.file_name for m in ordered]
    if len(set(files)) != len(files):
        raise CompilerBug("transform", "two objects would be written to the same file")
    return ordered
