"""The one engine pod builder: every engine pod of the plan (a Deployment's pods, a
RayCluster's head and workers) is built here, then every pod mutator in :data:`MUTATORS`
is applied to it, so a feature added to engines reaches all of them.

Roles: ``server`` (a single-node replica's pod), ``ray-head`` (serves the API: Ray head, then
the launcher that execs vLLM) and ``ray-worker`` (joins the head and blocks). Shared choices:

- ``/dev/shm`` is a memory-backed emptyDir (2 GiB per GPU of the pod): NCCL and the engine's
  workers exchange tensors through shared memory, and the container default is 64 MiB;
- the Hugging Face cache is an emptyDir so downloads do not fill the container layer; every
  pod gets the weights source (``envFrom`` Secret, PVC), since each Ray pod loads its shard;
- probes call ``/health``: a startup probe allows 30 minutes (180 x 10 s) for downloading and
  loading weights (a Ray head adds the launcher's wait for its workers), then readiness
  (5 s) and liveness (10 s x 6) take over;
- ``gpuPools[].runtimeClassName`` becomes the pod's ``runtimeClassName``;
- Pod Security Standards "restricted": non-root (UID/GID 1000, ``fsGroup`` 1000 so volumes
  are writable), RuntimeDefault seccomp, every capability dropped, no privilege escalation.
  The root filesystem stays writable (the one deviation from our components' hardening, by
  reason: vLLM, PyTorch and Triton write compile caches and Ray writes ``/tmp/ray`` in places
  images fix); ``HOME`` points at an emptyDir so those caches land on a volume;
- CPU and memory requests from the plan (``engine.resources``, else derived from the pod's
  GPUs), no limits: the pod is Burstable, never BestEffort;
- Ray pods use the pod network (no hostNetwork): ``NCCL_SOCKET_IFNAME``/``GLOO_SOCKET_IFNAME``
  ``eth0``, ``VLLM_HOST_IP`` = the pod IP.

Mutators (:class:`.pod_features.PodMutator`) are typed: each says which pods it applies to
and edits a copy.
"""

from __future__ import annotations

import copy
import shlex
from typing import Any

from ..plan import ModelPlan, Plan, WorkloadPlan
from ..plan.names import KV_EVENTS_PORT_NAME
from .component_parts import container_security, pod_security, with_pull_secrets
from .pod_features import MUTATORS, EngineRole, PodSpec

__all__ = [
    "LAUNCH_TIMEOUT_S",
    "RAY_PORT",
    "engine_pod",
    "head_script",
    "worker_script",
]

RAY_PORT = 6379
RAY_DASHBOARD_PORT = 8265
RAY_CLIENT_PORT = 10001
LAUNCH_TIMEOUT_S = 900  #: how long the launcher waits for every worker's GPUs
HF_CACHE = "/var/cache/huggingface"  # an emptyDir; HF_HOME points the engine at it
ENGINE_HOME = "/var/cache/engine-home"  # an emptyDir; HOME of the non-root engine user
ENGINE_UID = 1000
_SHM_GIB_PER_GPU = 2
_RAY_ENV = {"NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0", "NCCL_DEBUG": "WARN"}
_RAY_KEYS = (
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "envFrom",
    "resources",
    "volumeMounts",
    "securityContext",
)
#: Key order of the engine container per role (the order of the golden files).
_KEYS: dict[EngineRole, tuple[str, ...]] = {
    "server": (
        "name",
        "image",
        "imagePullPolicy",
        "command",
        "args",
        "ports",
        "env",
        "envFrom",
        "resources",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
        "volumeMounts",
        "securityContext",
    ),
    "ray-head": (*_RAY_KEYS, "ports", "startupProbe", "readinessProbe", "livenessProbe"),
    "ray-worker": _RAY_KEYS,
}


def head_script(model: ModelPlan, workload: WorkloadPlan) -> str:
    """The head container's shell line: Ray head, then the launcher that execs vLLM."""
    command = workload.command or model.command
    engine = [*command.command, *command.args, "--distributed-executor-backend", "ray"]
    ray = f"ray start --head --port={RAY_PORT} --dashboard-host=0.0.0.0 --num-gpus={workload.pool.gpus_per_node}"
    # The launcher comes from our packages on PYTHONPATH (pod_features.RAY_LAUNCHER): the vLLM
    # image has no aibrix-ray-launcher console script.
    launcher = (
        f"python3 -m runtime_components.ray_launcher.cli --expected-gpus {workload.gpus_per_replica} --timeout {LAUNCH_TIMEOUT_S}"
    )
    return f"ulimit -n 65536; {ray} --disable-usage-stats && exec {launcher} -- {shlex.join(engine)}"


def worker_script(cluster: str, workload: WorkloadPlan) -> str:
    """A worker container's shell line: join the head (KubeRay's <cluster>-head-svc) and block."""
    ray = f"ray start --address={cluster}-head-svc:{RAY_PORT} --num-gpus={workload.pool.gpus_per_node}"
    return f"ulimit -n 65536; exec {ray} --disable-usage-stats --block"


def _probe(period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _env(model: ModelPlan, workload: WorkloadPlan, role: EngineRole) -> list[dict[str, Any]]:
    fixed = {"HF_HOME": HF_CACHE, "HOME": ENGINE_HOME, **(_RAY_ENV if role != "server" else {})}
    values = {**fixed, **dict(model.env), **dict(workload.env)}  # the user's engine.env wins over ours
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    pod_ip = (*workload.pod_ip_env, *(("VLLM_HOST_IP",) if role != "server" else ()))
    env += [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} for name in pod_ip]
    return sorted(env, key=lambda e: e["name"])


def _container(plan: Plan, model: ModelPlan, workload: WorkloadPlan, role: EngineRole, cluster: str) -> dict[str, Any]:
    gpus = {workload.pool.resource_name: workload.gpus_per_replica if role == "server" else workload.pool.gpus_per_node}
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "hf-cache", "mountPath": HF_CACHE},
        {"name": "home", "mountPath": ENGINE_HOME},
    ]
    if model.pvc_claim is not None:
        mounts.append({"name": "models", "mountPath": "/models", "readOnly": True})
    if model.weights is not None and model.weights.cache is not None:  # downloaded by the init container
        mounts.append({"name": "model-cache", "mountPath": model.weights.cache.mount, "readOnly": True})
    http = {"name": "http", "containerPort": model.port, "protocol": "TCP"}
    container: dict[str, Any] = {
        "name": "ray-worker" if role == "ray-worker" else "engine",
        "image": model.image,
        "imagePullPolicy": plan.pull_policy,
        "env": _env(model, workload, role),
        "resources": {"requests": {"cpu": workload.cpu, "memory": workload.memory, **gpus}, "limits": dict(gpus)},
        "volumeMounts": mounts,
        "securityContext": container_security(read_only_root=False),
    }
    events = [{"name": KV_EVENTS_PORT_NAME, "containerPort": model.kv_events_port, "protocol": "TCP"}
              ] if model.kv_events_port is not None else []
    events += [{"name": name, "containerPort": port, "protocol": "TCP"} for name, port in workload.ports]
    command = workload.command or model.command
    if role == "server":
        container |= {"command": list(command.command), "args": list(command.args), "ports": [http, *events]}
    else:
        script = head_script(model, workload) if role == "ray-head" else worker_script(cluster, workload)
        container |= {"command": ["/bin/bash", "-lc", "--"], "args": [script]}
    if role == "ray-head":
        container["ports"] = [
            http,
            {"name": "gcs-server", "containerPort": RAY_PORT, "protocol": "TCP"},
            {"name": "dashboard", "containerPort": RAY_DASHBOARD_PORT, "protocol": "TCP"},
            {"name": "client", "containerPort": RAY_CLIENT_PORT, "protocol": "TCP"},
            *events,
        ]
    if role != "ray-worker":
        # A Ray head's startup covers the launcher's wait for the workers too.
        container["startupProbe"] = _probe(10, 180 + (LAUNCH_TIMEOUT_S // 10 if role == "ray-head" else 0))
        container["readinessProbe"] = _probe(5, 3)
        container["livenessProbe"] = _probe(10, 6)
    if model.secret_ref is not None:
        container["envFrom"] = [{"secretRef": {"name": model.secret_ref}}]
    return {key: container[key] for key in _KEYS[role] if key in container}


def _volumes(model: ModelPlan, gpus: int) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{_SHM_GIB_PER_GPU * gpus}Gi"}},
        {"name": "hf-cache", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
    ]
    if model.pvc_claim is not None:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": model.pvc_claim, "readOnly": True}})
    cache = model.weights.cache if model.weights is not None else None
    if cache is not None:
        if cache.kind == "hostPath":
            volumes.append({"name": "model-cache", "hostPath": {"path": cache.host_path, "type": "DirectoryOrCreate"}})
        elif cache.kind == "pvc":
            volumes.append({"name": "model-cache", "persistentVolumeClaim": {"claimName": cache.claim}})
        else:
            volumes.append({"name": "model-cache", "emptyDir": {}})
    return volumes


def engine_pod(plan: Plan, model: ModelPlan, workload: WorkloadPlan, role: EngineRole, *, cluster: str = "") -> PodSpec:
    """The pod spec of one engine pod, with every applicable mutator applied."""
    gpus = workload.gpus_per_replica if role == "server" else workload.pool.gpus_per_node
    pod: PodSpec = {
        "serviceAccountName": model.name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(uid=ENGINE_UID),
        "nodeSelector": dict(workload.pool.node_selector),
        "tolerations": [dict(t) for t in workload.pool.tolerations],
        "terminationGracePeriodSeconds": 60,
        "containers": [_container(plan, model, workload, role, cluster)],
        "volumes": _volumes(model, gpus),
    }
    if workload.pool.runtime_class is not None:  # same RuntimeClass as the pool's diag pods
        pod["runtimeClassName"] = workload.pool.runtime_class
    pod = with_pull_secrets(plan, pod)
    for mutator in MUTATORS:
        if mutator.applies(model, role):
            pod = mutator.apply(plan, model, copy.deepcopy(pod))
    return pod
