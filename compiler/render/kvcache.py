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
(``--block-size`` and ``--kv-transfer-config``) and its packages from the ``kv-connector``
pod feature (:mod:`.pod_features`), on every engine pod including Ray heads and workers.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec.components.kv import KVPoolConfig, parse_quantity

from ..manifest import Manifest
from ..plan import KvPoolPlan, Plan
from .component_parts import (
    config_map,
    container_security,
    dump_config,
    meta,
    network_policy,
    pdb,
    pod_security,
    service_account,
    with_pull_secrets,
)

__all__ = ["OVERHEAD_BYTES", "pool_config", "render"]

#: Memory beyond the block capacity: interpreter, connection buffers, the eviction index.
OVERHEAD_BYTES = 512 << 20
_CONFIG_DIR = "/etc/aibrix-kv"


def pool_config(pool: KvPoolPlan) -> KVPoolConfig:
    """The pool's config document, validated by the pool's own model."""
    return KVPoolConfig.model_validate(
        {
            "server": {
                "host": "0.0.0.0",
                "port": pool.port,
                "metricsPort": pool.metrics_port,
                "capacity": pool.memory_per_replica,
                "eviction": {"policy": pool.eviction},
                "shm": {"enabled": False},
            },
            "client": {
                "members": {"source": "dns", "dnsName": pool.dns_name, "port": pool.port},
                "sharedMemory": "never",
            },
        }
    )


def _mebibytes(n_bytes: int) -> str:
    return f"{-(-n_bytes // (1 << 20))}Mi"


def _statefulset(plan: Plan, pool: KvPoolPlan) -> dict[str, Any]:
    name = pool.component.name
    memory = _mebibytes(parse_quantity(pool.memory_per_replica) + OVERHEAD_BYTES)
    labels = pool.component.match_labels
    container = {
        "name": "kv-server",
        "image": pool.component.image,
        "imagePullPolicy": plan.pull_policy,
        "command": ["aibrix-kv-server"],
        "args": ["--config", f"{_CONFIG_DIR}/pool.yaml"],
        "ports": [
            {"name": "kv", "containerPort": pool.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": pool.metrics_port, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "1", "memory": memory}, "limits": {"memory": memory}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}],
        "securityContext": container_security(),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        # SIGTERM drains in-flight requests for drainSeconds (10 s) before the member exits.
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": name}}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name),
        "spec": {
            "replicas": pool.replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": with_pull_secrets(plan, pod)},
        },
    }


def _service(pool: KvPoolPlan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(pool.component.name),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": pool.component.match_labels,
            "ports": [
                {"name": "kv", "port": pool.port, "targetPort": "kv", "protocol": "TCP"},
                {"name": "metrics", "port": pool.metrics_port, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def render(plan: Plan) -> list[Manifest]:
    """The pool's objects, or nothing when spec.kvCache is off."""
    pool = plan.kv_pool
    if pool is None:
        return []
    name = pool.component.name
    rules = [
        {"from": list(plan.network.to_kv_pool), "ports": [{"protocol": "TCP", "port": pool.port}]},
        {"from": list(plan.network.scrapers), "ports": [{"protocol": "TCP", "port": pool.metrics_port}]},
    ]
    bodies = [
        config_map(name, {"pool.yaml": dump_config(pool_config(pool))}),
        service_account(name, api_access=False),
        _service(pool),
        _statefulset(plan, pool),
        pdb(plan, meta(name), pool.component.match_labels),
        network_policy(name, pool.component.match_labels, rules),
    ]
    return [Manifest(pool.component.component, body) for body in bodies]
