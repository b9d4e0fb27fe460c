"""Renderer family "kuberay": models whose replica spans several nodes, as KubeRay RayClusters.

A workload is multi-node when ``tensor x pipeline`` exceeds its pool's gpusPerNode (decided
in :mod:`compiler.plan`). One replica is one ``RayCluster`` (``ray.io/v1``) named
``<workload>-<k>``, k = 0 .. replicas-1, spanning ``nodes = ceil(tensor x pipeline /
gpusPerNode)`` pods of ``gpusPerNode`` GPUs: the head plus ``nodes - 1`` workers in one
worker group (min = max = replicas, KubeRay's autoscaler off). Pods come from the one
engine pod builder (:mod:`.engine_pod`), so every engine feature reaches Ray pods too.

Commands are ours, not KubeRay's generated ones (annotation ``ray.io/overwrite-container-cmd``):
the head runs ``ray start --head`` then ``aibrix-ray-launcher`` (vLLM starts only when every
worker's GPUs have joined); workers run ``ray start --address=<cluster>-head-svc:6379 --block``.

Only the serving head is discoverable: the model labels (``model.aibrix.ai/name`` ...) go on
the head pod only, so the model's Service (core family) and the gateway select heads; workers
carry ``aibrix.ai/ray-role: worker`` instead. A PodDisruptionBudget per workload lets at most
one head be evicted at a time. Ray's ports (GCS 6379, dashboard and job API 8265, client
10001, the workers' ports) stay inside one RayCluster: its pods carry
``aibrix.ai/ray-cluster: <cluster>`` and a NetworkPolicy per cluster admits only those pods
(the stack's default-deny policy refuses everyone else).
"""

from __future__ import annotations

from typing import Any

from ..manifest import Manifest
from ..plan import ModelPlan, Plan, WorkloadPlan
from ..plan.names import ENGINE
from .component_parts import network_policy, pdb
from .engine_pod import engine_pod

__all__ = ["render"]

_OVERWRITE_CMD = "ray.io/overwrite-container-cmd"


_CLUSTER_LABEL = "aibrix.ai/ray-cluster"


def _head(plan: Plan, model: ModelPlan, workload: WorkloadPlan, cluster: str) -> dict[str, Any]:
    labels = {**dict(workload.selector), **dict(model.labels), "aibrix.ai/ray-role": "head", _CLUSTER_LABEL: cluster}
    pod = engine_pod(plan, model, workload, "ray-head")
    return {"serviceType": "ClusterIP", "template": {"metadata": {"labels": dict(sorted(labels.items()))}, "spec": pod}}


def _workers(plan: Plan, model: ModelPlan, workload: WorkloadPlan, cluster: str) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": model.name,
        "aibrix.ai/gpu-pool": workload.pool.name,
        "aibrix.ai/ray-role": "worker",
        _CLUSTER_LABEL: cluster,
    }
    count = workload.nodes - 1
    pod = engine_pod(plan, model, workload, "ray-worker", cluster=cluster)
    template = {"metadata": {"labels": dict(sorted(labels.items()))}, "spec": pod}
    return {"groupName": "workers", "replicas": count, "minReplicas": count, "maxReplicas": count, "template": template}


def _ray_cluster(plan: Plan, model: ModelPlan, workload: WorkloadPlan, cluster: str, replica: int) -> Manifest:
    labels = {**dict(model.labels), "aibrix.ai/gpu-pool": workload.pool.name, "aibrix.ai/replica": str(replica)}
    body = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": cluster, "labels": dict(sorted(labels.items())), "annotations": {_OVERWRITE_CMD: "true"}},
        "spec": {
            "enableInTreeAutoscaling": False,
            "headGroupSpec": _head(plan, model, workload, cluster),
            "workerGroupSpecs": [_workers(plan, model, workload, cluster)],
        },
    }
    return Manifest(ENGINE, body)


def _cluster_policy(plan: Plan, cluster: str) -> Manifest:
    """Ray's ports admit the pods of this RayCluster only."""
    pods = {"app.kubernetes.io/instance": plan.stack_name, _CLUSTER_LABEL: cluster}
    return Manifest(ENGINE, network_policy(f"{cluster}-ray", pods, [{"from": [{"podSelector": {"matchLabels": pods}}]}]))


def render(plan: Plan) -> list[Manifest]:
    """RayClusters (one per replica) and a head PDB for every multi-node workload."""
    out: list[Manifest] = []
    for model in plan.models:
        for workload in model.workloads:
            if not workload.multi_node:
                continue
            labels = {**dict(model.labels), "aibrix.ai/gpu-pool": workload.pool.name}
            metadata = {"name": workload.name, "labels": dict(sorted(labels.items()))}
            out.append(Manifest(ENGINE, pdb(plan, metadata, dict(workload.selector), evict_unhealthy=True)))
            out += [_ray_cluster(plan, model, workload, name, k) for k, name in enumerate(workload.ray_clusters)]
            out += [_cluster_policy(plan, name) for name in workload.ray_clusters]
    return out
