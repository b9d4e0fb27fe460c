"""Renderer family "autoscaling": what moves the replica count of autoscaled models.

One scaling target per workload (model x pool); the workload's Deployment omits
``replicas`` (:mod:`.core`), so GitOps never fights the autoscaler. Bounds per workload: a
model on n pools splits ``replicas.min`` (and, for engine metrics, ``replicas.max``) over its
pools like a fixed count (first pools take the remainder, see :mod:`compiler.plan`); on the
optimizer's metric every pool may grow to the model's ``max`` (the optimizer caps the total)
and the lower bound is at least 1 unless a KPA may scale to zero.

- ``hpa``: an ``autoscaling/v2`` HorizontalPodAutoscaler. Engine metrics are ``Pods``
  metrics (averageValue = target per pod, samples labelled ``model_name``; a metrics adapter
  exposes the Prometheus name); the optimizer's gauge is an ``External`` metric selected by
  ``{model, pool}`` with averageValue 1 (desired = ceil(total / 1)). A Pods metric has one
  name, so ``concurrency`` (running + waiting) is refused for a bare HPA by the validate pass.
- ``hpa`` + ``useKeda``: a KEDA ScaledObject with a Prometheus trigger; query
  ``sum(<metric>{namespace, model_name, pod=~"<workload>-<rs>-<id>"})`` (one ``sum`` per
  summed name joined by ``+`` for ``concurrency``) and threshold = target (KEDA's
  AverageValue: desired = ceil(sum / threshold)). Server:
  ``spec.prometheusUrl`` (default: the Prometheus Operator's governing Service in "monitoring").
- ``kpa`` / ``apa``: one ``aibrix-scaler`` Deployment for the stack with its ConfigMap
  (:class:`aibrix_spec.components.scaler.ScalerConfig`, validated here; ``concurrency`` is
  ``name: vllm:num_requests_running`` with ``sumWith: [vllm:num_requests_waiting]``), ServiceAccount and
  a Role allowing exactly: get/patch ``deployments/scale`` of the stack's autoscaled
  workloads (by resourceNames), list pods, get/update its own Lease (create is not
  name-restricted in RBAC), create events. Leader election is on, so the two pods of a
  rolling update never both act.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec import AUTOSCALING_METRICS
from aibrix_spec.components.scaler import ScalerConfig

from ..manifest import Manifest
from ..plan import ModelPlan, Plan, WorkloadPlan
from . import core
from .component_parts import config_map, container_security, dump_config, meta, pod_security, rbac, selector, service_account

__all__ = ["COMPONENT", "SCALER", "needs_scaler", "render", "scaler_config", "scaler_peer"]

COMPONENT = "autoscaler"
SCALER = "aibrix-scaler"
SCALER_METRICS_PORT = 9090
_CONFIG_DIR = "/etc/aibrix/scaler"


def _spec(plan: Plan, model: ModelPlan) -> Any:
    return plan.stack.spec.models[model.index].autoscaling


def _scaled(plan: Plan, *policies: str) -> list[tuple[ModelPlan, WorkloadPlan, int, int]]:
    """(model, workload, min, max) of every autoscaled workload whose policy is in ``policies``."""
    out = []
    for model in plan.models:
        spec = _spec(plan, model)
        if spec.policy not in policies:
            continue
        n = len(model.workloads)
        optimizer = AUTOSCALING_METRICS[spec.metric].source == "optimizer"
        to_zero = spec.policy == "kpa"
        for k, workload in enumerate(model.workloads):
            low = model.replicas_min // n + (1 if k < model.replicas_min % n else 0)
            high = model.replicas_max if optimizer else model.replicas_max // n + (1 if k < model.replicas_max % n else 0)
            low = low if (to_zero and low == 0) else max(1, low)
            out.append((model, workload, low, max(low, high, 1)))
    return out


def needs_scaler(plan: Plan) -> bool:
    return bool(_scaled(plan, "kpa", "apa"))


def scaler_peer(plan: Plan) -> dict[str, Any] | None:
    """NetworkPolicy peer of the scaler's pods (it scrapes engines), when one runs."""
    return {"podSelector": {"matchLabels": selector(plan, COMPONENT, SCALER)}} if needs_scaler(plan) else None


def _quantity(value: float) -> str:
    """A Kubernetes quantity: integers as is, fractions in milli-units (0.7 -> 700m)."""
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def _metric_block(plan: Plan, model: ModelPlan, workload: WorkloadPlan) -> dict[str, Any]:
    from .optimizer import metrics_url

    spec = _spec(plan, model)
    metric = AUTOSCALING_METRICS[spec.metric]
    if metric.source == "optimizer":
        return {
            "name": metric.prometheus_name,
            "source": "optimizer",
            "aggregation": "total",
            "optimizer": {"url": metrics_url(plan), "labels": {"model": model.served_name, "pool": workload.pool.name}},
        }
    block: dict[str, Any] = {"name": metric.prometheus_name}
    if metric.sum_with:
        block["sumWith"] = list(metric.sum_with)
    return {
        **block,
        "source": "engine",
        "aggregation": "per-pod",
        "engine": {"port": model.port, "path": "/metrics", "labels": {"model_name": model.served_name}},
    }


def scaler_config(plan: Plan) -> ScalerConfig:
    """The scaler's config document, validated by the scaler's own model."""
    targets = []
    for model, workload, low, high in _scaled(plan, "kpa", "apa"):
        spec = _spec(plan, model)
        target: dict[str, Any] = {
            "name": workload.name,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload.name, "namespace": plan.namespace},
            "podSelector": core.selector_labels(plan, model, workload),
            "metric": _metric_block(plan, model, workload),
            "target": spec.target,
            "minReplicas": low,
            "maxReplicas": high,
            "policy": spec.policy,
        }
        if low == 0:
            target["kpa"] = {"scaleToZero": True}
        targets.append(target)
    return ScalerConfig.model_validate(
        {
            "targets": targets,
            "leaderElection": {"enabled": True, "leaseName": SCALER, "namespace": plan.namespace},
            "metricsPort": SCALER_METRICS_PORT,
        }
    )


def _scaler_objects(plan: Plan) -> list[dict[str, Any]]:
    workloads = sorted(w.name for _m, w, _l, _h in _scaled(plan, "kpa", "apa"))
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": workloads, "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [SCALER], "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    labels = selector(plan, COMPONENT, SCALER)
    container = {
        "name": "scaler",
        "image": plan.images.scaler,
        "imagePullPolicy": plan.images.pull_policy,
        "command": ["aibrix-scaler"],
        "args": ["run", "--config", f"{_CONFIG_DIR}/scaler.yaml"],
        # The Lease holder identity: the pod's own name.
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "metrics", "containerPort": SCALER_METRICS_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}],
        "securityContext": container_security(),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": SCALER,
        "securityContext": pod_security(),
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": SCALER}}],
    }
    if plan.images.pull_secret_ref is not None:
        pod["imagePullSecrets"] = [{"name": plan.images.pull_secret_ref}]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(SCALER),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return [
        config_map(SCALER, {"scaler.yaml": dump_config(scaler_config(plan))}),
        service_account(SCALER, api_access=True),
        *rbac(plan, SCALER, rules),
        deployment,
    ]


def _hpa(plan: Plan, model: ModelPlan, workload: WorkloadPlan, low: int, high: int) -> dict[str, Any]:
    spec = _spec(plan, model)
    metric = AUTOSCALING_METRICS[spec.metric]
    if metric.source == "optimizer":
        labels = {"model": model.served_name, "pool": workload.pool.name}
        source = {"type": "External", "external": {
            "metric": {"name": metric.prometheus_name, "selector": {"matchLabels": labels}},
            "target": {"type": "AverageValue", "averageValue": _quantity(spec.target)}}}
    else:
        source = {"type": "Pods", "pods": {
            "metric": {"name": metric.prometheus_name, "selector": {"matchLabels": {"model_name": model.served_name}}},
            "target": {"type": "AverageValue", "averageValue": _quantity(spec.target)}}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(workload.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload.name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [source],
        },
    }


def _promql(plan: Plan, model: ModelPlan, workload: WorkloadPlan) -> str:
    metric = AUTOSCALING_METRICS[_spec(plan, model).metric]
    if metric.source == "optimizer":
        return f'max({metric.prometheus_name}{{model="{model.served_name}",pool="{workload.pool.name}"}})'
    # Deployment pods are named <workload>-<replicaset hash>-<suffix>; '-' cannot occur inside either.
    pods = f"{workload.name}-[a-z0-9]+-[a-z0-9]+"
    match = f'namespace="{plan.namespace}",model_name="{model.served_name}",pod=~"{pods}"'
    return " + ".join(f"sum({name}{{{match}}})" for name in metric.names)


def _scaled_object(plan: Plan, model: ModelPlan, workload: WorkloadPlan, low: int, high: int) -> dict[str, Any]:
    spec = _spec(plan, model)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta(workload.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload.name},
            "minReplicaCount": low,
            "maxReplicaCount": high,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": plan.stack.spec.prometheus_url,
                        "query": _promql(plan, model, workload),
                        "threshold": f"{spec.target:g}",
                    },
                }
            ],
        },
    }


def render(plan: Plan) -> list[Manifest]:
    """HPAs, ScaledObjects and the scaler, for the models that need them."""
    bodies: list[dict[str, Any]] = []
    for model, workload, low, high in _scaled(plan, "hpa"):
        make = _scaled_object if _spec(plan, model).use_keda else _hpa
        bodies.append(make(plan, model, workload, low, high))
    if needs_scaler(plan):
        bodies += _scaler_objects(plan)
    return [Manifest(COMPONENT, body) for body in bodies]
