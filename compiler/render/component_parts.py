"""Builders every renderer family shares: object metadata, hardened pod and container
security, ServiceAccount + namespaced RBAC, PodDisruptionBudgets, image pull secrets,
ConfigMaps holding one validated config document, and NetworkPolicies.

One builder per kind of object that several families emit, so a rule about it (least
privilege, which pods a budget may evict) is written once. Every component object carries
``app.kubernetes.io/name: aibrix-<part>`` (the selector key, together with instance and
component, so two stacks in one namespace never select each other's pods). Config documents
are written with the compiler's one YAML dumper (no anchors, fields in model order), so
equal configs give equal bytes (and equal ``aibrix.ai/config-checksum`` annotations).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..plan import Plan
from ..serialize import dump_yaml

__all__ = [
    "NONROOT_UID",
    "config_map",
    "container_security",
    "dump_config",
    "meta",
    "network_policy",
    "pdb",
    "pod_security",
    "rbac",
    "service_account",
    "with_pull_secrets",
]

#: The conventional "nonroot" user of distroless images; our images run as it.
NONROOT_UID = 65532
_RBAC = "rbac.authorization.k8s.io"


def meta(name: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "labels": dict(sorted({"app.kubernetes.io/name": name, **labels}.items()))}


def pod_security(*, uid: int = NONROOT_UID) -> dict[str, Any]:
    """The pod half of Pod Security Standards "restricted": non-root, RuntimeDefault seccomp.
    A non-default ``uid`` also owns mounted volumes (``fsGroup``)."""
    security: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": uid}
    if uid != NONROOT_UID:
        security |= {"runAsGroup": uid, "fsGroup": uid}
    return {**security, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security(*, read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


def dump_config(model: BaseModel) -> str:
    """A validated component config as YAML (camelCase, only the fields that were set)."""
    return dump_yaml(model.model_dump(mode="json", by_alias=True, exclude_unset=True))


def config_map(name: str, data: dict[str, str], *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata = meta(name) if labels is None else {"name": name, "labels": labels}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(sorted(data.items()))}


def service_account(name: str, *, api_access: bool) -> dict[str, Any]:
    """A ServiceAccount; its token is mounted only when the pod talks to the Kubernetes API."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name), "automountServiceAccountToken": api_access}


def rbac(
    plan: Plan, name: str, rules: list[dict[str, Any]], *, account: str | None = None, labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """A namespaced Role with exactly ``rules`` and its RoleBinding to ServiceAccount
    ``account`` (default: ``name``)."""
    metadata = meta(name) if labels is None else {"name": name, "labels": labels}
    role = {"apiVersion": f"{_RBAC}/v1", "kind": "Role", "metadata": dict(metadata), "rules": rules}
    binding = {
        "apiVersion": f"{_RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": dict(metadata),
        "roleRef": {"apiGroup": _RBAC, "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account or name, "namespace": plan.namespace}],
    }
    return [role, binding]


def pdb(plan: Plan, metadata: dict[str, Any], match_labels: dict[str, str], *, evict_unhealthy: bool = False) -> dict[str, Any]:
    """A PodDisruptionBudget letting one pod at a time go. ``evict_unhealthy``: a pod that is
    not ready (an engine still loading weights, a crash loop) never blocks a node drain, where
    the target Kubernetes version supports saying so."""
    spec: dict[str, Any] = {"maxUnavailable": 1, "selector": {"matchLabels": match_labels}}
    if evict_unhealthy and plan.features.unhealthy_pod_eviction_policy:
        spec["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata, "spec": spec}


def with_pull_secrets(plan: Plan, pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` plus the stack's imagePullSecret, when it names one."""
    if plan.pull_secret is not None:
        pod["imagePullSecrets"] = [{"name": plan.pull_secret}]
    return pod


def network_policy(name: str, pods: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, Any]:
    """An ingress NetworkPolicy for ``pods`` admitting exactly ``rules``."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name),
        "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": rules},
    }
