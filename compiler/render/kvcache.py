"""Renderer family "kv-cache": the distributed KV-cache pool engines share (``spec.kvCache``).

Objects (component ``kv-cache``, all named ``aibrix-kv-cache``):

- ConfigMap ``pool.yaml``: a :class:`aibrix_spec.components.kv.KVPoolConfig` built here and
  validated with that model: the ``server`` block every member loads
  (``aibrix-kv-server --config``: capacity = ``memoryPerReplica``, the eviction plugin) and
  the ``client`` block (members from the headless Service's DNS, block port 9600);
- headless Service (``publishNotReadyAddresses: false``: a member joins the clients'
  rendezvous set only once ready) and a StatefulSet of ``replicas`` members (stable names,
  ``Parallel`` start: members are independent);
- PodDisruptionBudget ``maxUnavailable: 1`` (a lost member costs only its own keys);
- NetworkPolicy: only the stack's engine pods reach the block port; Prometheus reaches the
  metrics port.

Memory: the member's block memory is anonymous memory of ``capacity`` bytes, so the
container requests and is limited to ``capacity + 512Mi`` (Python, buffers, metadata) and
``Guaranteed``-style equal request and limit keeps it from being squeezed. The same-node
shared-memory path is off here (``shm.enabled: false``): it needs the member's heap file on a
hostPath both pods mount, which this renderer does not grant.

Engines of models with ``kvCache.enabled`` get the connector flags from the plan
(:func:`compiler.plan._kv_connector_args`): ``--block-size`` and ``--kv-transfer-config``.
Stock vLLM images do not contain the connector, so :func:`amend` adds to those engine pods
an init container (the pool's image) that copies the pure-Python packages
``runtime_components`` and ``aibrix_spec`` into an emptyDir, mounted read-only in the engine
at ``/opt/aibrix`` with ``PYTHONPATH`` pointing there (a user-set PYTHONPATH is kept after it).
The connector is vLLM's; an SGLang model asking for the pool is refused here.
"""

from __future__ import annotations

import copy
from typing import Any

from aibrix_spec.components.kv import KVPoolConfig, parse_quantity
from aibrix_spec.sections import KvCachePoolSpec

from ..errors import Diagnostic, SpecValidationError
from ..manifest import Manifest
from ..plan import KV_POOL_PORT, KV_POOL_SERVICE, Plan
from . import core
from .component_parts import (
    PROMETHEUS_PEER,
    config_map,
    container_security,
    dump_config,
    meta,
    pod_security,
    selector,
    service_account,
)

__all__ = ["COMPONENT", "CONNECTOR_DIR", "METRICS_PORT", "NAME", "OVERHEAD_BYTES", "amend", "pool_config", "render"]

COMPONENT = "kv-cache"
NAME = KV_POOL_SERVICE
METRICS_PORT = 9601
#: Memory beyond the block capacity: interpreter, connection buffers, the eviction index.
OVERHEAD_BYTES = 512 << 20
_CONFIG_DIR = "/etc/aibrix-kv"
#: Where engine pods find the connector's packages (an emptyDir filled by the init container).
CONNECTOR_DIR = "/opt/aibrix"
_COPY_PACKAGES = (
    "import os, shutil, aibrix_spec, runtime_components\n"
    "for package in (aibrix_spec, runtime_components):\n"
    "    source = os.path.dirname(package.__file__)\n"
    "    shutil.copytree(source, os.path.join(os.environ['TARGET'], package.__name__), dirs_exist_ok=True,\n"
    "                    ignore=shutil.ignore_patterns('__pycache__'))\n"
)


def _pool(plan: Plan) -> KvCachePoolSpec:
    return plan.stack.spec.kv_cache  # type: ignore[return-value]  # the defaults pass always sets it


def pool_config(plan: Plan) -> KVPoolConfig:
    """The pool's config document, validated by the pool's own model."""
    spec = _pool(plan)
    return KVPoolConfig.model_validate(
        {
            "server": {
                "host": "0.0.0.0",
                "port": KV_POOL_PORT,
                "metricsPort": METRICS_PORT,
                "capacity": spec.memory_per_replica,
                "eviction": {"policy": spec.eviction},
                "shm": {"enabled": False},
            },
            "client": {
                "members": {"source": "dns", "dnsName": f"{NAME}.{plan.namespace}.svc", "port": KV_POOL_PORT},
                "sharedMemory": "never",
            },
        }
    )


def _mebibytes(n_bytes: int) -> str:
    return f"{-(-n_bytes // (1 << 20))}Mi"


def _statefulset(plan: Plan) -> dict[str, Any]:
    spec = _pool(plan)
    memory = _mebibytes(parse_quantity(spec.memory_per_replica) + OVERHEAD_BYTES)
    labels = selector(plan, COMPONENT, NAME)
    container = {
        "name": "kv-server",
        "image": plan.images.kv_cache,
        "imagePullPolicy": plan.images.pull_policy,
        "command": ["aibrix-kv-server"],
        "args": ["--config", f"{_CONFIG_DIR}/pool.yaml"],
        "ports": [
            {"name": "kv", "containerPort": KV_POOL_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "1", "memory": memory}, "limits": {"memory": memory}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}],
        "securityContext": container_security(),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": NAME,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        # SIGTERM drains in-flight requests for drainSeconds (10 s) before the member exits.
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": NAME}}],
    }
    if plan.images.pull_secret_ref is not None:
        pod["imagePullSecrets"] = [{"name": plan.images.pull_secret_ref}]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(NAME),
        "spec": {
            "replicas": spec.replicas,
            "serviceName": NAME,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _service(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(NAME),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": selector(plan, COMPONENT, NAME),
            "ports": [
                {"name": "kv", "port": KV_POOL_PORT, "targetPort": "kv", "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def _network_policy(plan: Plan) -> dict[str, Any]:
    engines = {"app.kubernetes.io/component": core.COMPONENT, "app.kubernetes.io/instance": plan.stack_name}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(NAME),
        "spec": {
            "podSelector": {"matchLabels": selector(plan, COMPONENT, NAME)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": engines}}], "ports": [{"protocol": "TCP", "port": KV_POOL_PORT}]},
                {"from": [PROMETHEUS_PEER], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
        },
    }


def _refuse_non_vllm(plan: Plan) -> None:
    problems = [
        Diagnostic(
            ("spec", "models", m.index, "kvCache", "enabled"),
            f"the KV-cache pool's connector is a vLLM connector; model {m.name} runs {m.engine}",
            expected="kvCache.enabled: false, or engine.type: vllm",
            hint="SGLang keeps its own radix cache; turn the pool off for this model",
        )
        for m in plan.models
        if m.engine != "vllm" and plan.stack.spec.models[m.index].kv_cache.enabled
    ]
    if problems:
        raise SpecValidationError(problems)


def render(plan: Plan) -> list[Manifest]:
    """The pool's objects, or nothing when spec.kvCache is off."""
    if not _pool(plan).enabled:
        return []
    _refuse_non_vllm(plan)
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(NAME),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(plan, COMPONENT, NAME)}},
    }
    bodies = [
        config_map(NAME, {"pool.yaml": dump_config(pool_config(plan))}),
        service_account(NAME, api_access=False),
        _service(plan),
        _statefulset(plan),
        pdb,
        _network_policy(plan),
    ]
    return [Manifest(COMPONENT, body) for body in bodies]


def _with_connector(plan: Plan, body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    pod = body["spec"]["template"]["spec"]
    pod.setdefault("volumes", []).append({"name": "kv-connector", "emptyDir": {"sizeLimit": "256Mi"}})
    pod.setdefault("initContainers", []).append(
        {
            "name": "kv-connector",
            "image": plan.images.kv_cache,
            "imagePullPolicy": plan.images.pull_policy,
            "command": ["python3", "-c", _COPY_PACKAGES],
            "env": [{"name": "TARGET", "value": CONNECTOR_DIR}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "kv-connector", "mountPath": CONNECTOR_DIR}],
            "securityContext": container_security(),
        }
    )
    engine = pod["containers"][0]
    env = engine.setdefault("env", [])
    user = next((e for e in env if e["name"] == "PYTHONPATH"), None)
    if user is not None:
        user["value"] = f"{CONNECTOR_DIR}:{user['value']}"
    else:
        env.append({"name": "PYTHONPATH", "value": CONNECTOR_DIR})
        env.sort(key=lambda e: e["name"])
    engine.setdefault("volumeMounts", []).append({"name": "kv-connector", "mountPath": CONNECTOR_DIR, "readOnly": True})
    return body


def amend(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    """Engine Deployments of models using the pool get the connector's packages."""
    if not _pool(plan).enabled:
        return manifests
    users = {m.name for m in plan.models if plan.stack.spec.models[m.index].kv_cache.enabled and m.engine == "vllm"}
    out = []
    for m in manifests:
        owner = m.body.get("metadata", {}).get("labels", {}).get("model.aibrix.ai/name")
        if m.kind == "Deployment" and m.component == core.COMPONENT and owner in users:
            m = Manifest(m.component, _with_connector(plan, m.body))
        out.append(m)
    return out
