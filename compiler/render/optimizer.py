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
  stable URL (:func:`.gateway.metrics_urls`);
- profiles: the ``profiles.configMapRef`` ConfigMap mounted as ``profilesDir``; cells and
  (model, accelerator) pairs it lacks are derived from the roofline model when the
  catalogue knows the architecture and every accelerator, which is then required when no
  ConfigMap is given.

The optimizer publishes ``aibrix_optimizer_desired_replicas{model, pool}``, a total per
(model, pool); :mod:`.autoscaling` points each workload's scaling target at it.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec import AUTOSCALING_METRICS
from aibrix_spec.catalog import ACCELERATORS, MODEL_ARCHS
from aibrix_spec.components.optimizer import OptimizerConfig
from aibrix_spec.sections import OptimizerSpec

from ..errors import Diagnostic, SpecReferenceError
from ..manifest import Manifest
from ..plan import ModelPlan, Plan
from .component_parts import (
    PROMETHEUS_PEER,
    config_map,
    container_security,
    dump_config,
    duration_seconds,
    meta,
    pod_security,
    selector,
    service_account,
)

__all__ = ["COMPONENT", "NAME", "PORT", "metrics_url", "optimizer_config", "optimizer_peer", "render"]

COMPONENT = "optimizer"
NAME = "aibrix-optimizer"
PORT = 8080
_CONFIG_DIR = "/etc/aibrix/optimizer"
_PROFILES_DIR = "/etc/aibrix/profiles"


def _spec(plan: Plan) -> OptimizerSpec:
    return plan.stack.spec.optimizer  # type: ignore[return-value]  # the defaults pass always sets it


def _enabled(plan: Plan) -> bool:
    return _spec(plan).enabled


def metrics_url(plan: Plan) -> str:
    return f"http://{NAME}.{plan.namespace}.svc:{PORT}/metrics"


def optimizer_peer(plan: Plan) -> dict[str, Any] | None:
    """NetworkPolicy peer of the optimizer's pods (it scrapes the gateway), when it runs."""
    return {"podSelector": {"matchLabels": selector(plan, COMPONENT, NAME)}} if _enabled(plan) else None


def _placed_models(plan: Plan) -> list[ModelPlan]:
    return [
        m
        for m in plan.models
        if m.autoscaled and AUTOSCALING_METRICS[plan.stack.spec.models[m.index].autoscaling.metric].source == "optimizer"
    ]


def _arch(model: ModelPlan) -> str | None:
    return next((name for name in (model.name, model.served_name) if name in MODEL_ARCHS), None)


def _check(plan: Plan, models: list[ModelPlan]) -> None:
    spec = plan.stack.spec
    problems = []
    if not models:
        problems.append(Diagnostic(
            ("spec", "optimizer"),
            "the optimizer has no model to place",
            expected="a model with autoscaling.metric: optimizer_desired_replicas",
            hint="set that metric (with policy hpa, kpa or apa) on the models it should place, or remove spec.optimizer",
        ))
    if spec.gateway is None or not spec.gateway.enabled:
        problems.append(Diagnostic(
            ("spec", "optimizer"),
            "the optimizer reads its workload from the gateway's token histogram, and the gateway is off",
            expected="spec.gateway present and enabled",
            hint="add `gateway: {}` under spec",
        ))
    derive = _spec(plan).profiles.config_map_ref is None
    for m in models:
        if spec.models[m.index].slo.ttft_p99_ms is None and spec.models[m.index].slo.tpot_p99_ms is None:
            problems.append(Diagnostic(
                ("spec", "models", m.index, "slo"),
                f"model {m.name} is placed by the optimizer but has no SLO",
                expected="slo.ttftP99Ms and/or slo.tpotP99Ms",
                hint="profiles are the highest rates that meet the SLO, so the optimizer needs one",
            ))
        if derive and _arch(m) is None:
            problems.append(Diagnostic(
                ("spec", "models", m.index, "name"),
                f"no profiles for model {m.name}: optimizer.profiles.configMapRef is empty and the catalogue "
                "has no architecture of that name to derive them from",
                expected="a name from the catalogue: " + ", ".join(sorted(MODEL_ARCHS)),
                hint="measure profiles (aibrix-optimize profile) into a ConfigMap and set optimizer.profiles.configMapRef",
            ))
    if problems:
        raise SpecReferenceError(problems)


def optimizer_config(plan: Plan) -> OptimizerConfig:
    """The optimizer's config document, validated by the optimizer's own model."""
    from .gateway import metrics_urls

    models = _placed_models(plan)
    _check(plan, models)
    spec = _spec(plan)
    used_pools = {w.pool.name for m in models for w in m.workloads}
    pools = [p for p in plan.pools if p.name in used_pools]
    sources = {p.name: p for p in plan.stack.spec.gpu_pools}
    pool_entries = []
    for p in pools:
        entry: dict[str, Any] = {
            "name": p.name,
            "accelerator": sources[p.name].accelerator or p.product,
            "costPerGpuHour": p.cost_per_gpu_hour,
        }
        max_nodes = sources[p.name].max_nodes
        if max_nodes is not None:
            entry["maxGpus"] = max_nodes * p.gpus_per_node
        pool_entries.append(entry)
    model_entries = []
    for m in models:
        slo = plan.stack.spec.models[m.index].slo
        entry = {
            "name": m.served_name,
            "pools": [w.pool.name for w in m.workloads],
            "gpusPerReplica": m.gpus_per_replica,
            "minReplicas": m.replicas_min,
            "maxReplicas": m.replicas_max,
            "slo": slo.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        if _arch(m) is not None:
            entry["arch"] = _arch(m)
        model_entries.append(entry)
    derivable = all(_arch(m) is not None for m in models) and all(e["accelerator"] in ACCELERATORS for e in pool_entries)
    document: dict[str, Any] = {
        "pools": pool_entries,
        "models": model_entries,
        "workload": {"gatewayMetricsUrls": metrics_urls(plan)},
        "deriveMissingProfiles": derivable,
        "solver": spec.solver,
        "intervalSeconds": duration_seconds(spec.interval),
    }
    if spec.profiles.config_map_ref is not None:
        document["profilesDir"] = _PROFILES_DIR
    return OptimizerConfig.model_validate(document)


def _deployment(plan: Plan) -> dict[str, Any]:
    spec = _spec(plan)
    mounts = [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": NAME}}]
    if spec.profiles.config_map_ref is not None:
        mounts.append({"name": "profiles", "mountPath": _PROFILES_DIR, "readOnly": True})
        volumes.append({"name": "profiles", "configMap": {"name": spec.profiles.config_map_ref}})
    labels = selector(plan, COMPONENT, NAME)
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6}
    container = {
        "name": "optimizer",
        "image": plan.images.optimizer,
        "imagePullPolicy": plan.images.pull_policy,
        "command": ["aibrix-optimize"],
        "args": ["serve", "--config", f"{_CONFIG_DIR}/optimizer.yaml", "--port", str(PORT)],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # Deriving roofline profiles and solving the ILP are CPU-bound.
        "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "readinessProbe": probe,
        "livenessProbe": probe,
        "volumeMounts": mounts,
        # CBC writes its model files to a temporary directory.
        "securityContext": container_security(read_only_root=False),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": NAME,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "containers": [container],
        "volumes": volumes,
    }
    if plan.images.pull_secret_ref is not None:
        pod["imagePullSecrets"] = [{"name": plan.images.pull_secret_ref}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(NAME),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def render(plan: Plan) -> list[Manifest]:
    """The optimizer's objects, or nothing when spec.optimizer is off."""
    if not _enabled(plan):
        return []
    from .autoscaling import scaler_peer

    labels = selector(plan, COMPONENT, NAME)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(NAME),
        "spec": {"type": "ClusterIP", "selector": labels, "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]},
    }
    peers = [PROMETHEUS_PEER] + [p for p in (scaler_peer(plan),) if p is not None]
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(NAME),
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}],
        },
    }
    bodies = [
        config_map(NAME, {"optimizer.yaml": dump_config(optimizer_config(plan))}),
        service_account(NAME, api_access=False),
        service,
        _deployment(plan),
        policy,
    ]
    return [Manifest(COMPONENT, body) for body in bodies]
