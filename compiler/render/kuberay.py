"""Renderer family "kuberay": models whose replica spans several nodes, as KubeRay RayClusters.

A workload is multi-node when ``tensor x pipeline`` exceeds its pool's gpusPerNode (decided
in :mod:`compiler.plan`). One replica is one ``RayCluster`` (``ray.io/v1``) named
``<workload>-<k>``, k = 0 .. replicas-1, spanning ``nodes = ceil(tensor x pipeline /
gpusPerNode)`` pods of ``gpusPerNode`` GPUs: the head plus ``nodes - 1`` workers in one
worker group (min = max = replicas, KubeRay's autoscaler off).

Commands are ours, not KubeRay's generated ones (annotation ``ray.io/overwrite-container-cmd``):

- head: ``ray start --head`` (GCS on 6379), then ``aibrix-ray-launcher --expected-gpus
  <tensor x pipeline> --timeout 900 -- <vLLM command> --distributed-executor-backend ray``:
  vLLM starts only when every worker's GPUs have joined;
- workers: ``ray start --address=<cluster>-head-svc:6379 --block`` (KubeRay creates that
  Service).

Networking: pod network (no hostNetwork), ``NCCL_SOCKET_IFNAME``/``GLOO_SOCKET_IFNAME=eth0``,
``NCCL_DEBUG=WARN``, ``VLLM_HOST_IP`` = the pod IP; ``/dev/shm`` is a memory emptyDir of 2 GiB
per GPU. Every pod gets the model's weights source (``envFrom`` Secret, PVC, Hugging Face
cache), since each loads its own shard.

Only the serving head is discoverable: the model labels (``model.aibrix.ai/name`` ...) go on
the head pod only, so the model's Service (core family) and the gateway select heads; workers
carry ``aibrix.ai/ray-role: worker`` instead. A PodDisruptionBudget per workload lets at most
one head be evicted at a time. Pod templates of a RayCluster are not ``spec.template``, so this
family sets the common labels on them itself.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..errors import Diagnostic, SpecValidationError
from ..manifest import Manifest
from ..plan import ModelPlan, Plan, WorkloadPlan
from ..transforms.labels import common_labels
from .core import COMPONENT, selector_labels

__all__ = ["LAUNCH_TIMEOUT_S", "RAY_PORT", "head_script", "render", "worker_script"]

RAY_PORT = 6379
_DASHBOARD_PORT = 8265
_CLIENT_PORT = 10001
LAUNCH_TIMEOUT_S = 900  #: how long the launcher waits for every worker's GPUs
_HF_CACHE = "/var/cache/huggingface"  # same layout as the core family's Deployments
_SHM_GIB_PER_GPU = 2
_OVERWRITE_CMD = "ray.io/overwrite-container-cmd"
_HEAD_SVC = "-head-svc"  # KubeRay names the head Service <cluster>-head-svc, a DNS label (<= 63)
_MAX_CLUSTER_NAME = 63 - len(_HEAD_SVC)


def _cluster_names(workload: WorkloadPlan) -> list[str]:
    return [f"{workload.name}-{k}" for k in range(workload.replicas or 0)]


def head_script(model: ModelPlan, workload: WorkloadPlan) -> str:
    """The head container's shell line: Ray head, then the launcher that execs vLLM."""
    engine = [*model.command.command, *model.command.args, "--distributed-executor-backend", "ray"]
    ray = f"ray start --head --port={RAY_PORT} --dashboard-host=0.0.0.0 --num-gpus={workload.pool.gpus_per_node}"
    launcher = f"aibrix-ray-launcher --expected-gpus {workload.gpus_per_replica} --timeout {LAUNCH_TIMEOUT_S}"
    return f"ulimit -n 65536; {ray} --disable-usage-stats && exec {launcher} -- {shlex.join(engine)}"


def worker_script(cluster: str, workload: WorkloadPlan) -> str:
    """A worker container's shell line: join the head and block."""
    ray = f"ray start --address={cluster}{_HEAD_SVC}:{RAY_PORT} --num-gpus={workload.pool.gpus_per_node}"
    return f"ulimit -n 65536; exec {ray} --disable-usage-stats --block"


def _model_labels(model: ModelPlan) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": model.name,
        "model.aibrix.ai/name": model.name,
        "model.aibrix.ai/port": str(model.port),
    }


def _env(model: ModelPlan) -> list[dict[str, Any]]:
    fixed = {
        "HF_HOME": _HF_CACHE,
        "NCCL_SOCKET_IFNAME": "eth0",  # the pod network; no hostNetwork
        "GLOO_SOCKET_IFNAME": "eth0",
        "NCCL_DEBUG": "WARN",
    }
    values = {**fixed, **dict(model.env)}  # the user's engine.env wins
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    env.append({"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    return sorted(env, key=lambda e: e["name"])


def _probe(period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _container(plan: Plan, model: ModelPlan, workload: WorkloadPlan, *, name: str, script: str) -> dict[str, Any]:
    gpus = {workload.pool.resource_name: workload.pool.gpus_per_node}
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "hf-cache", "mountPath": _HF_CACHE}]
    if model.pvc_claim is not None:
        mounts.append({"name": "models", "mountPath": "/models", "readOnly": True})
    container: dict[str, Any] = {
        "name": name,
        "image": model.image,
        "imagePullPolicy": plan.images.pull_policy,
        "command": ["/bin/bash", "-lc", "--"],
        "args": [script],
        "env": _env(model),
    }
    if model.secret_ref is not None:
        container["envFrom"] = [{"secretRef": {"name": model.secret_ref}}]
    container["resources"] = {"requests": dict(gpus), "limits": dict(gpus)}
    container["volumeMounts"] = mounts
    container["securityContext"] = {"allowPrivilegeEscalation": False}
    return container


def _pod_spec(plan: Plan, model: ModelPlan, workload: WorkloadPlan, container: dict[str, Any]) -> dict[str, Any]:
    shm = f"{_SHM_GIB_PER_GPU * workload.pool.gpus_per_node}Gi"
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        {"name": "hf-cache", "emptyDir": {}},
    ]
    if model.pvc_claim is not None:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": model.pvc_claim, "readOnly": True}})
    spec: dict[str, Any] = {
        "serviceAccountName": model.name,
        "automountServiceAccountToken": False,
        "nodeSelector": dict(workload.pool.node_selector),
        "tolerations": [dict(t) for t in workload.pool.tolerations],
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": volumes,
    }
    if workload.pool.runtime_class is not None:
        spec["runtimeClassName"] = workload.pool.runtime_class
    if plan.images.pull_secret_ref is not None:
        spec["imagePullSecrets"] = [{"name": plan.images.pull_secret_ref}]
    return spec


def _head(plan: Plan, model: ModelPlan, workload: WorkloadPlan) -> dict[str, Any]:
    container = _container(plan, model, workload, name="engine", script=head_script(model, workload))
    container["ports"] = [
        {"name": "http", "containerPort": model.port, "protocol": "TCP"},
        {"name": "gcs-server", "containerPort": RAY_PORT, "protocol": "TCP"},
        {"name": "dashboard", "containerPort": _DASHBOARD_PORT, "protocol": "TCP"},
        {"name": "client", "containerPort": _CLIENT_PORT, "protocol": "TCP"},
    ]
    # Startup covers the launcher's wait for the workers plus the 30 minutes of the core family.
    container["startupProbe"] = _probe(10, 180 + LAUNCH_TIMEOUT_S // 10)
    container["readinessProbe"] = _probe(5, 3)
    container["livenessProbe"] = _probe(10, 6)
    labels = {
        **common_labels(plan, COMPONENT),
        **selector_labels(plan, model, workload),
        **_model_labels(model),
        "aibrix.ai/ray-role": "head",
    }
    template = {"metadata": {"labels": dict(sorted(labels.items()))}, "spec": _pod_spec(plan, model, workload, container)}
    return {"serviceType": "ClusterIP", "template": template}


def _workers(plan: Plan, model: ModelPlan, workload: WorkloadPlan, cluster: str) -> dict[str, Any]:
    container = _container(plan, model, workload, name="ray-worker", script=worker_script(cluster, workload))
    labels = {
        **common_labels(plan, COMPONENT),
        "app.kubernetes.io/name": model.name,
        "aibrix.ai/gpu-pool": workload.pool.name,
        "aibrix.ai/ray-role": "worker",
    }
    count = workload.nodes - 1
    template = {"metadata": {"labels": dict(sorted(labels.items()))}, "spec": _pod_spec(plan, model, workload, container)}
    return {"groupName": "workers", "replicas": count, "minReplicas": count, "maxReplicas": count, "template": template}


def _ray_cluster(plan: Plan, model: ModelPlan, workload: WorkloadPlan, cluster: str, replica: int) -> Manifest:
    labels = {**_model_labels(model), "aibrix.ai/gpu-pool": workload.pool.name, "aibrix.ai/replica": str(replica)}
    body = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": cluster, "labels": dict(sorted(labels.items())), "annotations": {_OVERWRITE_CMD: "true"}},
        "spec": {
            "enableInTreeAutoscaling": False,
            "headGroupSpec": _head(plan, model, workload),
            "workerGroupSpecs": [_workers(plan, model, workload, cluster)],
        },
    }
    return Manifest(COMPONENT, body)


def _pdb(plan: Plan, model: ModelPlan, workload: WorkloadPlan) -> Manifest:
    labels = {**_model_labels(model), "aibrix.ai/gpu-pool": workload.pool.name}
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": workload.name, "labels": dict(sorted(labels.items()))},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(plan, model, workload)}},
    }
    return Manifest(COMPONENT, body)


def _check_names(plan: Plan) -> None:
    problems = []
    for model in plan.models:
        longest = max((n for w in model.workloads if w.multi_node for n in _cluster_names(w)), key=len, default="")
        if len(longest) > _MAX_CLUSTER_NAME:
            problems.append(
                Diagnostic(
                    ("spec", "models", model.index, "name"),
                    f'RayCluster "{longest}" is too long: its head Service "{longest}{_HEAD_SVC}" exceeds 63 characters',
                    expected=f"RayCluster names of at most {_MAX_CLUSTER_NAME} characters (<workload>-<replica>)",
                    hint="shorten the model name (or the pool name, for a model on several pools)",
                )
            )
    if problems:
        raise SpecValidationError(problems)


def render(plan: Plan) -> list[Manifest]:
    """RayClusters (one per replica) and a head PDB for every multi-node workload."""
    _check_names(plan)
    out: list[Manifest] = []
    for model in plan.models:
        for workload in model.workloads:
            if not workload.multi_node:
                continue
            out.append(_pdb(plan, model, workload))
            out += [_ray_cluster(plan, model, workload, name, k) for k, name in enumerate(_cluster_names(workload))]
    return out
