"""Renderer family "core": the objects of every single-node model.

Per model: a ServiceAccount (no API token mounted), a ClusterIP Service on the engine
port, and per workload (model x pool) a Deployment and a PodDisruptionBudget
(``maxUnavailable: 1``). Plus the Namespace when ``spec.createNamespace`` is set.

Deployment choices, each for a reason:

- rolling updates surge one pod and never drop below the count (``maxSurge: 1,
  maxUnavailable: 0``): a model keeps serving while it rolls;
- ``/dev/shm`` is a memory-backed emptyDir (2 GiB per GPU): NCCL and the engine's
  workers exchange tensors through shared memory, and the container default is 64 MiB;
- the Hugging Face cache is an emptyDir so downloads do not fill the container layer;
- probes all call ``/health``: a startup probe allows 30 minutes (180 x 10 s) for
  downloading and loading weights, then readiness (5 s) and liveness (10 s x 6) take over;
- an autoscaled workload omits ``replicas`` so GitOps never fights the autoscaler;
- ``gpuPools[].runtimeClassName`` becomes the pod's ``runtimeClassName``, as on the pool's
  diagnostics DaemonSet and RayCluster pods.

Labels common to every object (instance, part-of, managed-by, component) are added by
the labels transformer; here only selector labels and model labels are set.
"""

from __future__ import annotations

from typing import Any

from ..manifest import Manifest
from ..plan import ModelPlan, Plan, WorkloadPlan

__all__ = ["COMPONENT", "render", "selector_labels"]

COMPONENT = "engine"
_HF_CACHE = "/var/cache/huggingface"  # an emptyDir; HF_HOME points the engine at it
_SHM_GIB_PER_GPU = 2


def selector_labels(plan: Plan, model: ModelPlan, workload: WorkloadPlan | None = None) -> dict[str, str]:
    """Labels that select a model's pods (and one workload's, when given)."""
    labels = {
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/instance": plan.stack_name,
        "model.aibrix.ai/name": model.name,
    }
    if workload is not None:
        labels["aibrix.ai/gpu-pool"] = workload.pool.name
    return dict(sorted(labels.items()))


def _model_labels(model: ModelPlan) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": model.name,
        "model.aibrix.ai/name": model.name,
        "model.aibrix.ai/port": str(model.port),
    }


def _meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "labels": dict(sorted(labels.items()))}


def _service_account(model: ModelPlan) -> Manifest:
    return Manifest(
        COMPONENT,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(model.name, _model_labels(model)),
            "automountServiceAccountToken": False,
        },
    )


def _service(plan: Plan, model: ModelPlan) -> Manifest:
    return Manifest(
        COMPONENT,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(model.name, _model_labels(model)),
            "spec": {
                "type": "ClusterIP",
                "selector": selector_labels(plan, model),
                "ports": [{"name": "http", "port": model.port, "targetPort": "http", "protocol": "TCP"}],
            },
        },
    )


def _probe(period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _container(plan: Plan, model: ModelPlan, workload: WorkloadPlan) -> dict[str, Any]:
    gpus = {workload.pool.resource_name: workload.gpus_per_replica}
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "hf-cache", "mountPath": _HF_CACHE},
    ]
    if model.pvc_claim is not None:
        mounts.append({"name": "models", "mountPath": "/models", "readOnly": True})
    container: dict[str, Any] = {
        "name": "engine",
        "image": model.image,
        "imagePullPolicy": plan.images.pull_policy,
        "command": list(model.command.command),
        "args": list(model.command.args),
        "ports": [{"name": "http", "containerPort": model.port, "protocol": "TCP"}],
    }
    env = {"HF_HOME": _HF_CACHE, **dict(model.env)}  # the user's engine.env wins
    container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    if model.secret_ref is not None:
        container["envFrom"] = [{"secretRef": {"name": model.secret_ref}}]
    container["resources"] = {"requests": dict(gpus), "limits": dict(gpus)}
    container["startupProbe"] = _probe(10, 180)
    container["readinessProbe"] = _probe(5, 3)
    container["livenessProbe"] = _probe(10, 6)
    container["volumeMounts"] = mounts
    container["securityContext"] = {"allowPrivilegeEscalation": False}
    return container


def _volumes(model: ModelPlan, workload: WorkloadPlan) -> list[dict[str, Any]]:
    shm = f"{_SHM_GIB_PER_GPU * workload.gpus_per_replica}Gi"
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        {"name": "hf-cache", "emptyDir": {}},
    ]
    if model.pvc_claim is not None:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": model.pvc_claim, "readOnly": True}})
    return volumes


def _deployment(plan: Plan, model: ModelPlan, workload: WorkloadPlan) -> Manifest:
    selector = selector_labels(plan, model, workload)
    pod_labels = dict(sorted({**selector, **_model_labels(model)}.items()))
    pod_spec: dict[str, Any] = {
        "serviceAccountName": model.name,
        "automountServiceAccountToken": False,
        "nodeSelector": dict(workload.pool.node_selector),
        "tolerations": [dict(t) for t in workload.pool.tolerations],
        "terminationGracePeriodSeconds": 60,
        "containers": [_container(plan, model, workload)],
        "volumes": _volumes(model, workload),
    }
    if workload.pool.runtime_class is not None:  # same RuntimeClass as the pool's diag and Ray pods
        pod_spec["runtimeClassName"] = workload.pool.runtime_class
    if plan.images.pull_secret_ref is not None:
        pod_spec["imagePullSecrets"] = [{"name": plan.images.pull_secret_ref}]
    spec: dict[str, Any] = {}
    if workload.replicas is not None:
        spec["replicas"] = workload.replicas
    spec["selector"] = {"matchLabels": selector}
    spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    spec["template"] = {"metadata": {"labels": pod_labels}, "spec": pod_spec}
    labels = {**_model_labels(model), "aibrix.ai/gpu-pool": workload.pool.name}
    return Manifest(
        COMPONENT,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(workload.name, labels), "spec": spec},
    )


def _pdb(plan: Plan, model: ModelPlan, workload: WorkloadPlan) -> Manifest:
    labels = {**_model_labels(model), "aibrix.ai/gpu-pool": workload.pool.name}
    return Manifest(
        COMPONENT,
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(workload.name, labels),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(plan, model, workload)}},
        },
    )


def render(plan: Plan) -> list[Manifest]:
    """The namespace (optional) and every single-node model's objects."""
    out: list[Manifest] = []
    if plan.create_namespace:
        out.append(Manifest("namespace", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": plan.namespace}}))
    for model in plan.models:
        out += [_service_account(model), _service(plan, model)]
        for workload in model.workloads:
            if workload.multi_node:
                continue  # the kuberay family renders these as RayClusters
            out += [_deployment(plan, model, workload), _pdb(plan, model, workload)]
    return out
