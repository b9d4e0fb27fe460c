"""Building blocks shared by the renderers of the stack's own components (gateway, Envoy,
KV-cache pool, scaler, optimizer): object metadata, hardened pod and container security,
ServiceAccount + namespaced RBAC, ConfigMaps holding one validated config document, and the
NetworkPolicy peers those components allow.

Every component object carries ``app.kubernetes.io/name: aibrix-<part>`` (the selector key,
together with instance and component, so two stacks in one namespace never select each
other's pods). Config documents are written with the compiler's one YAML dumper (no
anchors, fields in model order), so equal configs give equal bytes (and equal
``aibrix.ai/config-checksum`` annotations).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from ..plan import Plan
from ..serialize import dump_yaml

__all__ = [
    "NONROOT_UID",
    "PROMETHEUS_PEER",
    "config_map",
    "container_security",
    "dump_config",
    "duration_seconds",
    "meta",
    "pod_security",
    "rbac",
    "selector",
    "service_account",
]

#: The conventional "nonroot" user of distroless images; our images run as it.
NONROOT_UID = 65532

#: Prometheus pods anywhere in the cluster (the Prometheus Operator labels them so): they
#: scrape engines and components, and the HPA's metrics adapter reads them.
PROMETHEUS_PEER: dict[str, Any] = {
    "namespaceSelector": {},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}

_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """Seconds in a spec Duration (``300s``, ``5m``, ``250ms``, ``1h``); the spec's pattern
    guarantees the shape, so a mismatch is a compiler bug (ValueError)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def selector(plan: Plan, component: str, name: str) -> dict[str, str]:
    """Labels selecting one component's pods of this stack."""
    return {
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": plan.stack_name,
        "app.kubernetes.io/name": name,
    }


def meta(name: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "labels": dict(sorted({"app.kubernetes.io/name": name, **labels}.items()))}


def pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": NONROOT_UID, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security(*, read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


def dump_config(model: BaseModel) -> str:
    """A validated component config as YAML (camelCase, only the fields that were set)."""
    return dump_yaml(model.model_dump(mode="json", by_alias=True, exclude_unset=True))


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name), "data": dict(sorted(data.items()))}


def service_account(name: str, *, api_access: bool) -> dict[str, Any]:
    """A ServiceAccount; its token is mounted only when the pod talks to the Kubernetes API."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name), "automountServiceAccountToken": api_access}


def rbac(plan: Plan, name: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A namespaced Role with exactly ``rules`` and its RoleBinding to ServiceAccount ``name``."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name), "rules": rules}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": plan.namespace}],
    }
    return [role, binding]
