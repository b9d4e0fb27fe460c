"""Renderer family "optimizer": the SLO-driven GPU-mix optimizer (``spec.optimizer``).

Objects (component ``optimizer``, named ``aibrix-optimizer``): a ConfigMap holding
``optimizer.yaml``, an :class:`aibrix_spec.components.optimizer.OptimizerConfig` built here
and validated with that model; a ServiceAccount without API access; a Deployment running
``aibrix-optimize serve`` (one replica: it is a stateless re-solver, and a restart only
delays the next plan); a Service on port 8080 (``/metrics``, ``/plan``, ``/healthz``); a
NetworkPolicy letting only the scaler and Prometheus in.

What the config says:

- models: those autoscaled on ``optimizer_desired_replicas``, by OpenAI name (the gateway's
  ``model`` label), with their pools, GPUs per replica, replica range (a total over pools)
  and SLO (required: profiles are rates that meet it);
- pools: accelerator, cost per GPU-hour and ``maxGpus = maxNodes x gpusPerNode``;
- workload: the gateway's token-bucket counters, summed over every gateway replica's
  stable URL (the plan's ``GatewayPlan.metrics_urls``);
- profiles: the ``profiles.configMapRef`` ConfigMap mounted as ``profilesDir``; cells and
  (model, accelerator) pairs it lacks are derived from the roofline model when the
  catalogue knows the architecture and every accelerator, which is then required when no
  ConfigMap is given.

The optimizer publishes ``aibrix_optimizer_desired_replicas{model, pool}``, a total per
(model, pool); the plan points each workload's scaling target at it.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec.components.optimizer import OptimizerConfig

from ..manifest import Manifest
from ..plan import OptimizerPlan, Plan
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

__all__ = ["optimizer_config", "render"]

_CONFIG_DIR = "/etc/aibrix/optimizer"
_PROFILES_DIR = "/etc/aibrix/profiles"


def optimizer_config(opt: OptimizerPlan) -> OptimizerConfig:
    """The optimizer's config document, validated by the optimizer's own model."""
    pools = []
    for p in opt.pools:
        entry: dict[str, Any] = {"name": p.name, "accelerator": p.accelerator, "costPerGpuHour": p.cost_per_gpu_hour}
        if p.max_gpus is not None:
            entry["maxGpus"] = p.max_gpus
        pools.append(entry)
    models = []
    for m in opt.models:
        model: dict[str, Any] = {
            "name": m.name,
            "pools": list(m.pools),
            "gpusPerReplica": m.gpus_per_replica,
            "minReplicas": m.min_replicas,
            "maxReplicas": m.max_replicas,
            "slo": dict(m.slo),
        }
        if m.arch is not None:
            model["arch"] = m.arch
        models.append(model)
    document: dict[str, Any] = {
        "pools": pools,
        "models": models,
        "workload": {"gatewayMetricsUrls": list(opt.gateway_metrics_urls)},
        "deriveMissingProfiles": opt.derive_missing_profiles,
        "solver": opt.solver,
        "intervalSeconds": opt.interval_s,
    }
    if opt.profiles_config_map is not None:
        document["profilesDir"] = _PROFILES_DIR
    return OptimizerConfig.model_validate(document)


def _deployment(plan: Plan, opt: OptimizerPlan) -> dict[str, Any]:
    name = opt.component.name
    mounts = [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": name}}]
    if opt.profiles_config_map is not None:
        mounts.append({"name": "profiles", "mountPath": _PROFILES_DIR, "readOnly": True})
        volumes.append({"name": "profiles", "configMap": {"name": opt.profiles_config_map}})
    labels = opt.component.match_labels
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6}
    container = {
        "name": "optimizer",
        "image": opt.component.image,
        "imagePullPolicy": plan.pull_policy,
        "command": ["aibrix-optimize"],
        "args": ["serve", "--config", f"{_CONFIG_DIR}/optimizer.yaml", "--port", str(opt.port)],
        "ports": [{"name": "http", "containerPort": opt.port, "protocol": "TCP"}],
        # Deriving roofline profiles and solving the ILP are CPU-bound.
        "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "readinessProbe": probe,
        "livenessProbe": probe,
        "volumeMounts": mounts,
        # CBC writes its model files to a temporary directory.
        "securityContext": container_security(read_only_root=False),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "containers": [container],
        "volumes": volumes,
    }
    return {
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


def render(plan: Plan) -> list[Manifest]:
    """The optimizer's objects, or nothing when spec.optimizer is off."""
    opt = plan.optimizer
    if opt is None:
        return []
    name = opt.component.name
    labels = opt.component.match_labels
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "http", "port": opt.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    rules = [{"from": list(plan.network.to_optimizer), "ports": [{"protocol": "TCP", "port": opt.port}]}]
    bodies = [
        config_map(name, {"optimizer.yaml": dump_config(optimizer_config(opt))}),
        service_account(name, api_access=False),
        service,
        _deployment(plan, opt),
        network_policy(name, labels, rules),
    ]
    return [Manifest(opt.component.component, body) for body in bodies]
