"""Renderer family "diagnostics": the `aibrix-diag` daemon on the stack's GPU nodes.

One DaemonSet and one ConfigMap per covered pool (``spec.diagnostics.pools``, default every
pool), not one DaemonSet with node affinity over all pools: each pool has its own GPU count
per node (the config's ``expectedGpuCount``), node selector, tolerations and runtime class,
and a DaemonSet has exactly one pod template and one mounted config. Per pool:

- ConfigMap ``aibrix-diag-<pool>``, key ``config.yaml``: a validated
  :class:`aibrix_spec.components.diag.DiagConfig` (expectedGpuCount = the pool's gpusPerNode,
  intervalSeconds from ``spec.diagnostics.interval``, metrics on port 9402, node condition and
  taint as the spec opts in);
- DaemonSet ``aibrix-diag-<pool>`` running ``aibrix-diag --periodic --config ...`` with
  ``NODE_NAME`` from ``spec.nodeName``. It requests no GPU (that would take one from the
  engines): ``NVIDIA_VISIBLE_DEVICES=all`` makes the NVIDIA container runtime (the pool's
  RuntimeClass when it names one) expose every GPU to NVML. It tolerates its own taint, so a
  node it tainted keeps its diagnostics and can be untainted.

Shared by the pools: ServiceAccount ``aibrix-diag`` (token mounted only when node actions
need the API), a headless Service exposing ``metrics`` (the observability family turns it
into a ServiceMonitor), and, only when ``nodeCondition`` or ``taintOnFailure`` is on, a
ClusterRole (nodes: get, patch; nodes/status: patch; nodes are cluster-scoped, so a Role
cannot grant it) bound to that ServiceAccount. The ClusterRole's name carries namespace and
stack (``aibrix-diag-<namespace>-<stack>``) because cluster-scoped names are global.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec import DiagnosticsSpec
from aibrix_spec.components.diag import DiagConfig, MetricsEndpoint, NodeActions

from ..manifest import Manifest
from ..plan import Plan, PoolPlan
from .component_parts import config_map, container_security, duration_seconds, dump_config, meta, selector, service_account

__all__ = ["COMPONENT", "METRICS_PORT", "NAME", "diag_config", "render"]

COMPONENT = "diagnostics"
NAME = "aibrix-diag"
METRICS_PORT = 9402
CONFIG_DIR = "/etc/aibrix-diag"
_RBAC_API = "rbac.authorization.k8s.io/v1"


def _section(plan: Plan) -> DiagnosticsSpec | None:
    section = plan.stack.spec.diagnostics
    return section if section is not None and section.enabled else None


def covered_pools(plan: Plan) -> list[PoolPlan]:
    """The pools the daemon runs on, in the order the spec lists them."""
    section = _section(plan)
    if section is None:
        return []
    if section.pools is None:
        return list(plan.pools)
    by_name = {p.name: p for p in plan.pools}
    return [by_name[name] for name in section.pools]


def _node_actions(section: DiagnosticsSpec) -> bool:
    return section.node_condition or section.taint_on_failure


def diag_config(section: DiagnosticsSpec, pool: PoolPlan) -> DiagConfig:
    """The daemon's config for one pool, validated by the model the daemon loads."""
    return DiagConfig(
        expected_gpu_count=pool.gpus_per_node,
        interval_seconds=duration_seconds(section.interval),
        metrics=MetricsEndpoint(port=METRICS_PORT),
        node=NodeActions(set_condition=section.node_condition, taint_on_failure=section.taint_on_failure),
    )


def _pod_labels(plan: Plan, pool: PoolPlan) -> dict[str, str]:
    return {**selector(plan, COMPONENT, NAME), "aibrix.ai/gpu-pool": pool.name}


def _container(plan: Plan) -> dict[str, Any]:
    return {
        "name": "diag",
        "image": plan.images.diagnostics,
        "imagePullPolicy": plan.images.pull_policy,
        "command": ["aibrix-diag", "--periodic", "--config", f"{CONFIG_DIR}/config.yaml"],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            # The NVIDIA runtime mounts every GPU for NVML without taking one from the engines.
            {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "utility"},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 30, "timeoutSeconds": 5},
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "securityContext": container_security(),
    }


def _daemon_set(plan: Plan, section: DiagnosticsSpec, pool: PoolPlan) -> Manifest:
    labels = _pod_labels(plan, pool)
    tolerations = [dict(t) for t in pool.tolerations]
    # Keep running on a node this daemon tainted, whatever the effect, so it can untaint it.
    tolerations.append({"key": NodeActions().taint_key, "operator": "Exists"})
    pod_spec: dict[str, Any] = {
        "serviceAccountName": NAME,
        "automountServiceAccountToken": _node_actions(section),
        "nodeSelector": dict(pool.node_selector),
        "tolerations": tolerations,
        "containers": [_container(plan)],
        "volumes": [{"name": "config", "configMap": {"name": f"{NAME}-{pool.name}"}}],
    }
    if pool.runtime_class is not None:
        pod_spec["runtimeClassName"] = pool.runtime_class
    if plan.images.pull_secret_ref is not None:
        pod_spec["imagePullSecrets"] = [{"name": plan.images.pull_secret_ref}]
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(f"{NAME}-{pool.name}", **{"aibrix.ai/gpu-pool": pool.name}),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    return Manifest(COMPONENT, body)


def _service(plan: Plan) -> Manifest:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(NAME),
        "spec": {
            "clusterIP": "None",  # per-pod endpoints: each node's daemon is scraped on its own
            "selector": selector(plan, COMPONENT, NAME),
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }
    return Manifest(COMPONENT, body)


def _cluster_rbac(plan: Plan) -> list[Manifest]:
    name = f"{NAME}-{plan.namespace}-{plan.stack_name}"
    role = {
        "apiVersion": _RBAC_API,
        "kind": "ClusterRole",
        "metadata": meta(name),
        "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
        ],
    }
    binding = {
        "apiVersion": _RBAC_API,
        "kind": "ClusterRoleBinding",
        "metadata": meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": plan.namespace}],
    }
    return [Manifest(COMPONENT, role), Manifest(COMPONENT, binding)]


def render(plan: Plan) -> list[Manifest]:
    """Nothing unless spec.diagnostics is on; else the objects listed in the module docstring."""
    section = _section(plan)
    if section is None:
        return []
    out = [Manifest(COMPONENT, service_account(NAME, api_access=_node_actions(section))), _service(plan)]
    if _node_actions(section):
        out += _cluster_rbac(plan)
    for pool in covered_pools(plan):
        data = {"config.yaml": dump_config(diag_config(section, pool))}
        out += [Manifest(COMPONENT, config_map(f"{NAME}-{pool.name}", data)), _daemon_set(plan, section, pool)]
    return out
