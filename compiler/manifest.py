"""The unit renderers produce and transformers rewrite: one Kubernetes object.

``component`` names the part of the stack the object belongs to (``engine``,
``gateway``, ``kv-cache`` ...): it becomes the ``app.kubernetes.io/component`` label and
the folder of the object's file under ``-o DIR``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["HOT_RELOADED", "CLUSTER_SCOPED_KINDS", "KIND_ORDER", "Manifest", "kind_priority", "pod_templates"]

#: Annotation of a ConfigMap its component re-reads while running: changing it does not roll
#: pods (the config-checksum transform leaves it out).
HOT_RELOADED = "aibrix.ai/hot-reloaded"

#: Kinds without a namespace (the namespace transformer leaves them alone).
CLUSTER_SCOPED_KINDS: frozenset[str] = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "StorageClass",
        "GatewayClass",
        "IngressClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
)

#: Apply order: what others depend on first (the one kind-order constant).
KIND_ORDER: tuple[str, ...] = (
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
    "Service",
    "PodDisruptionBudget",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "RayCluster",
    "HorizontalPodAutoscaler",
    "ScaledObject",
    "NetworkPolicy",
    "GatewayClass",
    "Gateway",
    "HTTPRoute",
    "InferencePool",
    "BackendTrafficPolicy",
    "EnvoyExtensionPolicy",
    "ServiceMonitor",
    "PodMonitor",
    "PrometheusRule",
)


def kind_priority(kind: str) -> int:
    """Position of ``kind`` in :data:`KIND_ORDER`; unknown kinds go last."""
    try:
        return KIND_ORDER.index(kind)
    except ValueError:
        return len(KIND_ORDER)


@dataclass(frozen=True)
class Manifest:
    """One object: the component it belongs to and its body (a plain dict)."""

    component: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace", ""))

    @property
    def sort_key(self) -> tuple[int, str, str, str]:
        return (kind_priority(self.kind), self.namespace, self.name, self.kind)

    @property
    def file_name(self) -> str:
        """``<component>/<kind>-<name>.yaml``, as written under -o DIR."""
        return f"{self.component}/{self.kind.lower()}-{self.name}.yaml"


def pod_templates(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every pod template of an object: a workload's ``spec.template``, a RayCluster's head and
    worker group templates. Yields the template dicts themselves (edit in place on a copy)."""
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return
    if isinstance(spec.get("template"), dict):
        yield spec["template"]
    head = spec.get("headGroupSpec")
    if isinstance(head, dict) and isinstance(head.get("template"), dict):
        yield head["template"]
    for group in spec.get("workerGroupSpecs") or ():
        if isinstance(group, dict) and isinstance(group.get("template"), dict):
            yield group["template"]
