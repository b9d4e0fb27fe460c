"""Renderer family "autoscaling": what moves the replica count of autoscaled models.

One scaling target per workload (model x pool), decided by the plan
(:func:`compiler.plan.components.plan_scale_targets`: bounds, metric, the optimizer's URL);
the workload's Deployment omits ``replicas``, so GitOps never fights the autoscaler.

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

from aibrix_spec.components.scaler import ScalerConfig

from ..manifest import Manifest
from ..plan import Plan, ScalerPlan, ScaleTarget
from .component_parts import (
    config_map,
    container_security,
    dump_config,
    meta,
    network_policy,
    pod_security,
    rbac,
    service_account,
    with_pull_secrets,
)

__all__ = ["COMPONENT", "render", "scaler_config"]

COMPONENT = "autoscaler"
_CONFIG_DIR = "/etc/aibrix/scaler"


def _quantity(value: float) -> str:
    """A Kubernetes quantity: integers as is, fractions in milli-units (0.7 -> 700m)."""
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def _metric_block(t: ScaleTarget) -> dict[str, Any]:
    if t.source == "optimizer":
        return {
            "name": t.metric,
            "source": "optimizer",
            "aggregation": "total",
            "optimizer": {"url": t.optimizer_url, "labels": {"model": t.served_name, "pool": t.pool}},
        }
    block: dict[str, Any] = {"name": t.metric}
    if len(t.metric_names) > 1:
        block["sumWith"] = list(t.metric_names[1:])
    return {
        **block,
        "source": "engine",
        "aggregation": "per-pod",
        "engine": {"port": t.engine_port, "path": "/metrics", "labels": {"model_name": t.served_name}, "engine": t.engine},
    }


def scaler_config(plan: Plan, scaler: ScalerPlan) -> ScalerConfig:
    """The scaler's config document, validated by the scaler's own model."""
    targets = []
    for t in scaler.targets:
        target: dict[str, Any] = {
            "name": t.workload,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": t.workload, "namespace": plan.namespace},
            "podSelector": dict(t.pod_selector),
            "metric": _metric_block(t),
            "target": t.target,
            "minReplicas": t.low,
            "maxReplicas": t.high,
            "policy": t.policy,
        }
        if t.demand_urls:  # the gateway's held + in-flight requests: they wake a workload at zero, and count as demand
            target["demand"] = {"urls": list(t.demand_urls), "model": t.served_name,
                                **({"scaleToZeroGraceSeconds": t.scale_to_zero_grace_s}
                                   if t.scale_to_zero_grace_s is not None else {})}
        elif t.low == 0:
            target["kpa"] = {"scaleToZero": True}
        targets.append(target)
    return ScalerConfig.model_validate(
        {
            "targets": targets,
            "leaderElection": {"enabled": True, "leaseName": scaler.component.name, "namespace": plan.namespace},
            "metricsPort": scaler.metrics_port,
        }
    )


def _scaler_objects(plan: Plan, scaler: ScalerPlan) -> list[dict[str, Any]]:
    name = scaler.component.name
    workloads = sorted(t.workload for t in scaler.targets)
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": workloads, "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [name], "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    labels = scaler.component.match_labels
    container = {
        "name": "scaler",
        "image": scaler.component.image,
        "imagePullPolicy": plan.pull_policy,
        "command": ["aibrix-scaler"],
        "args": ["run", "--config", f"{_CONFIG_DIR}/scaler.yaml"],
        # The Lease holder identity: the pod's own name.
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "metrics", "containerPort": scaler.metrics_port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}],
        "securityContext": container_security(),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "securityContext": pod_security(),
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": name}}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": with_pull_secrets(plan, pod)},
        },
    }
    return [
        config_map(name, {"scaler.yaml": dump_config(scaler_config(plan, scaler))}),
        service_account(name, api_access=True),
        *rbac(plan, name, rules),
        deployment,
        network_policy(
            name, labels, [{"from": list(plan.network.scrapers), "ports": [{"protocol": "TCP", "port": scaler.metrics_port}]}]
        ),
    ]


def _hpa(t: ScaleTarget) -> dict[str, Any]:
    if t.source == "optimizer":
        labels = {"model": t.served_name, "pool": t.pool}
        source = {
            "type": "External",
            "external": {
                "metric": {"name": t.metric, "selector": {"matchLabels": labels}},
                "target": {"type": "AverageValue", "averageValue": _quantity(t.target)},
            },
        }
    else:
        source = {
            "type": "Pods",
            "pods": {
                "metric": {"name": t.metric, "selector": {"matchLabels": {"model_name": t.served_name}}},
                "target": {"type": "AverageValue", "averageValue": _quantity(t.target)},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(t.workload),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": t.workload},
            "minReplicas": t.low,
            "maxReplicas": t.high,
            "metrics": [source],
        },
    }


def _promql(plan: Plan, t: ScaleTarget) -> str:
    if t.source == "optimizer":
        return f'max({t.metric}{{model="{t.served_name}",pool="{t.pool}"}})'
    # Deployment pods are named <workload>-<replicaset hash>-<suffix>; '-' cannot occur inside either.
    pods = f"{t.workload}-[a-z0-9]+-[a-z0-9]+"
    match = f'namespace="{plan.namespace}",model_name="{t.served_name}",pod=~"{pods}"'
    return " + ".join(f"sum({name}{{{match}}})" for name in t.metric_names)


def _demand_trigger(plan: Plan, t: ScaleTarget) -> dict[str, Any]:
    """Scale from zero under KEDA: the gateways' held + in-flight requests of the model.

    Above activationThreshold 0, KEDA activates the workload (0 -> 1); the engine trigger
    sizes it from there. cooldownPeriod (the idle grace) delays the way back to zero."""
    match = f'namespace="{plan.namespace}",model="{t.served_name}"'
    query = f"sum(aibrix_gateway_flow_held_requests{{{match}}}) + sum(aibrix_gateway_flow_inflight_requests{{{match}}})"
    return {"type": "prometheus", "metadata": {"serverAddress": plan.prometheus_url, "query": query,
                                                "threshold": f"{t.target:g}", "activationThreshold": "0"}}


def _scaled_object(plan: Plan, t: ScaleTarget) -> dict[str, Any]:
    if t.demand_urls:  # KEDA targets read demand only to scale from zero (see plan.components)
        assert t.scale_to_zero_grace_s is not None
        return _with_demand(_scaled_object_body(plan, t), _demand_trigger(plan, t), t.scale_to_zero_grace_s)
    return _scaled_object_body(plan, t)


def _with_demand(body: dict[str, Any], trigger: dict[str, Any], grace_s: float) -> dict[str, Any]:
    spec = dict(body["spec"])
    spec["triggers"] = [*spec["triggers"], trigger]
    spec["cooldownPeriod"] = max(1, round(grace_s))
    return {**body, "spec": spec}


def _scaled_object_body(plan: Plan, t: ScaleTarget) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta(t.workload),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": t.workload},
            "minReplicaCount": t.low,
            "maxReplicaCount": t.high,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {"serverAddress": plan.prometheus_url, "query": _promql(plan, t), "threshold": f"{t.target:g}"},
                }
            ],
        },
    }


def render(plan: Plan) -> list[Manifest]:
    """HPAs, ScaledObjects and the scaler, for the models that need them."""
    bodies: list[dict[str, Any]] = [
        _scaled_object(plan, t) if t.use_keda else _hpa(t) for t in plan.scale_targets if t.policy == "hpa"
    ]
    if plan.scaler is not None:
        bodies += _scaler_objects(plan, plan.scaler)
    return [Manifest(COMPONENT, body) for body in bodies]
