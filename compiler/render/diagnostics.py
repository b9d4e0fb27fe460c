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

from aibrix_spec.components.diag import DiagConfig, MetricsEndpoint, NodeActions

from ..manifest import Manifest
from ..plan import DiagnosticsPlan, Plan, PoolPlan
from .component_parts import (
    config_map,
    container_security,
    dump_config,
    meta,
    network_policy,
    pod_security,
    service_account,
    with_pull_secrets,
)

__all__ = ["CONFIG_DIR", "diag_config", "render"]

CONFIG_DIR = "/etc/aibrix-diag"
_RBAC_API = "rbac.authorization.k8s.io/v1"


def diag_config(diag: DiagnosticsPlan, pool: PoolPlan) -> DiagConfig:
    """The daemon's config for one pool, validated by the model the daemon loads."""
    return DiagConfig(
        expected_gpu_count=pool.gpus_per_node,
        interval_seconds=diag.interval_s,
        metrics=MetricsEndpoint(port=diag.metrics_port),
        node=NodeActions(set_condition=diag.node_condition, taint_on_failure=diag.taint_on_failure),
    )


def _container(plan: Plan, diag: DiagnosticsPlan) -> dict[str, Any]:
    return {
        "name": "diag",
        "image": diag.component.image,
        "imagePullPolicy": plan.pull_policy,
        "command": ["aibrix-diag", "--periodic", "--config", f"{CONFIG_DIR}/config.yaml"],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            # The NVIDIA runtime mounts every GPU for NVML without taking one from the engines.
            {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "utility"},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
        ],
        "ports": [{"name": "metrics", "containerPort": diag.metrics_port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 30, "timeoutSeconds": 5},
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "securityContext": container_security(),
    }


def _daemon_set(plan: Plan, diag: DiagnosticsPlan, pool: PoolPlan) -> Manifest:
    name = f"{diag.component.name}-{pool.name}"
    labels = {**diag.component.match_labels, "aibrix.ai/gpu-pool": pool.name}
    tolerations = [dict(t) for t in pool.tolerations]
    # Keep running on a node this daemon tainted, whatever the effect, so it can untaint it.
    tolerations.append({"key": NodeActions().taint_key, "operator": "Exists"})
    pod_spec: dict[str, Any] = {
        "serviceAccountName": diag.component.name,
        "automountServiceAccountToken": diag.node_actions,
        "securityContext": pod_security(),
        "nodeSelector": dict(pool.node_selector),
        "tolerations": tolerations,
        "containers": [_container(plan, diag)],
        "volumes": [{"name": "config", "configMap": {"name": name}}],
    }
    if pool.runtime_class is not None:
        pod_spec["runtimeClassName"] = pool.runtime_class
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(name, **{"aibrix.ai/gpu-pool": pool.name}),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels}, "spec": with_pull_secrets(plan, pod_spec)},
        },
    }
    return Manifest(diag.component.component, body)


def _service(diag: DiagnosticsPlan) -> Manifest:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(diag.component.name),
        "spec": {
            "clusterIP": "None",  # per-pod endpoints: each node's daemon is scraped on its own
            "selector": diag.component.match_labels,
            "ports": [{"name": "metrics", "port": diag.metrics_port, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }
    return Manifest(diag.component.component, body)


def _cluster_rbac(plan: Plan, diag: DiagnosticsPlan) -> list[Manifest]:
    name = f"{diag.component.name}-{plan.namespace}-{plan.stack_name}"
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
        "subjects": [{"kind": "ServiceAccount", "name": diag.component.name, "namespace": plan.namespace}],
    }
    return [Manifest(diag.component.component, role), Manifest(diag.component.component, binding)]


def _own_node_only(plan: Plan, diag: DiagnosticsPlan, account: str) -> list[Manifest]:
    """A ValidatingAdmissionPolicy confining the daemon's node writes: RBAC can only grant
    patch on every node, so the API server itself checks that the node a daemon patches is
    the one its token was issued on (the token's node-name claim), and that the patch changes
    nothing but the daemon's own taint and condition."""
    name = f"{diag.component.name}-{plan.namespace}-{plan.stack_name}"
    actions = NodeActions()
    user = f"system:serviceaccount:{plan.namespace}:{account}"
    node_claim = "authentication.kubernetes.io/node-name"
    taints = f"(has(o.spec.taints) ? o.spec.taints.filter(t, t.key != '{actions.taint_key}') : [])"
    conditions = (
        f"(has(o.status) && has(o.status.conditions) ? o.status.conditions.filter(c, c.type != '{actions.condition_type}') : [])"
    )
    labels = "(has(o.metadata.labels) ? o.metadata.labels : {})"
    annotations = "(has(o.metadata.annotations) ? o.metadata.annotations : {})"

    def same(expression: str) -> str:
        return f"{expression.replace('o.', 'object.')} == {expression.replace('o.', 'oldObject.')}"

    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": meta(name),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes", "nodes/status"]}
                ]
            },
            "matchConditions": [{"name": "the-diag-daemon", "expression": f"request.userInfo.username == '{user}'"}],
            "validations": [
                {
                    "expression": f"'{node_claim}' in request.userInfo.extra && "
                    f"request.userInfo.extra['{node_claim}'][0] == object.metadata.name",
                    "message": "aibrix-diag may change only the node its pod runs on",
                },
                {"expression": same(taints), "message": f"aibrix-diag may change only its own taint {actions.taint_key}"},
                {
                    "expression": same(conditions),
                    "message": f"aibrix-diag may change only its own condition {actions.condition_type}",
                },
                {
                    "expression": f"{same(labels)} && {same(annotations)}",
                    "message": "aibrix-diag may not change node labels or annotations",
                },
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": meta(name),
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [Manifest(diag.component.component, policy), Manifest(diag.component.component, binding)]


def render(plan: Plan) -> list[Manifest]:
    """Nothing unless spec.diagnostics is on; else the objects listed in the module docstring."""
    diag = plan.diagnostics
    if diag is None:
        return []
    component = diag.component.component
    out = [Manifest(component, service_account(diag.component.name, api_access=diag.node_actions)), _service(diag)]
    if diag.node_actions:
        out += _cluster_rbac(plan, diag)
        if plan.features.validating_admission_policy:
            out += _own_node_only(plan, diag, diag.component.name)
    rules = [{"from": list(plan.network.scrapers), "ports": [{"protocol": "TCP", "port": diag.metrics_port}]}]
    out.append(Manifest(component, network_policy(diag.component.name, diag.component.match_labels, rules)))
    for pool in diag.pools:
        data = {"config.yaml": dump_config(diag_config(diag, pool))}
        out += [Manifest(component, config_map(f"{diag.component.name}-{pool.name}", data)), _daemon_set(plan, diag, pool)]
    return out
