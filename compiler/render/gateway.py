"""Renderer family "gateway": the LLM-aware gateway and the way traffic reaches it.

Always (when ``spec.gateway`` is on):

- ``aibrix-gateway`` ConfigMap holding ``gateway.yaml``, a
  :class:`aibrix_spec.components.gateway.GatewayConfig` built here and validated with that
  model, so the file is exactly what ``aibrix-gateway --config`` loads: Kubernetes discovery
  in the stack's namespace, one entry per model (OpenAI name, the engine pods' selector and
  port, the model's RoutingSpec, its adapters), rate-limit tiers, the users file (the
  ``users.secretRef`` Secret mounted as a directory, so key rotations reach the pod) and the
  Redis URL shared by the replicas, with ``redisPasswordFile`` pointing at key ``password``
  of the ``redis.passwordSecretRef`` Secret, mounted read-only as a file (never an env var,
  so it stays out of ``kubectl describe`` and process listings);
- the gateway itself: ServiceAccount, a Role that may only list/watch pods (discovery),
  its RoleBinding, a headless Service and a StatefulSet. A StatefulSet (not a Deployment)
  because each replica keeps its own token-bucket counters and the optimizer sums them over
  stable per-pod URLs ``http://aibrix-gateway-<i>.aibrix-gateway.<ns>.svc:8080/metrics``;
- NetworkPolicies: engine pods accept traffic only from the gateway, the proxies, the scaler,
  Prometheus and each other; gateway pods accept ext_proc only from the proxies and metric
  scrapes only from the optimizer and Prometheus.

``mode: standalone``: our own Envoy (Deployment ``aibrix-envoy``, its Service and a ConfigMap
with the bootstrap of :func:`.envoy_bootstrap.envoy_bootstrap`: ext_proc to every gateway
replica through the headless Service, ORIGINAL_DST on the gateway's destination header,
``numRetries`` fallbacks, the route timeout = ``gateway.requestTimeout``).

``mode: envoy-gateway``: objects of :mod:`.gateway_api` for an installed Envoy Gateway.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec.components.gateway import GatewayConfig
from aibrix_spec.sections import GatewaySpec

from ..manifest import Manifest
from ..plan import Plan
from ..serialize import dump_yaml
from . import core
from .component_parts import (
    PROMETHEUS_PEER,
    config_map,
    container_security,
    dump_config,
    duration_seconds,
    meta,
    pod_security,
    rbac,
    selector,
    service_account,
)
from .envoy_bootstrap import envoy_bootstrap

__all__ = ["COMPONENT", "ENVOY", "GATEWAY", "GRPC_PORT", "HTTP_PORT", "gateway_config", "metrics_urls", "render"]

COMPONENT = "gateway"
GATEWAY = "aibrix-gateway"
ENVOY = "aibrix-envoy"
GRPC_PORT = 50051
HTTP_PORT = 8080
ENVOY_PORT = 8080
ENVOY_ADMIN_PORT = 9901
#: Envoy retries a failed connect/reset on the gateway's next-best pods; the gateway names this many.
NUM_RETRIES = 2
_CONFIG_DIR = "/etc/aibrix/gateway"
_USERS_DIR = "/etc/aibrix/users"
_USERS_KEY = "users.yaml"
_REDIS_DIR = "/etc/aibrix/redis"
_REDIS_PASSWORD_KEY = "password"  # the key RedisSpec.passwordSecretRef documents


def _gateway(plan: Plan) -> GatewaySpec:
    return plan.stack.spec.gateway  # type: ignore[return-value]  # the defaults pass always sets it


def metrics_urls(plan: Plan) -> list[str]:
    """The /metrics URL of every gateway replica (stable StatefulSet pod names)."""
    n = _gateway(plan).replicas
    return [f"http://{GATEWAY}-{i}.{GATEWAY}.{plan.namespace}.svc:{HTTP_PORT}/metrics" for i in range(n)]


def gateway_config(plan: Plan) -> GatewayConfig:
    """The gateway's config file, validated by the gateway's own model."""
    spec = _gateway(plan)
    models = []
    for model in plan.models:
        source = plan.stack.spec.models[model.index]
        models.append(
            {
                "name": model.served_name,
                "selector": core.selector_labels(plan, model),
                "port": model.port,
                # Defaults left out: a stack and its defaults-pass output give the same file.
                "routing": source.routing.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                "adapters": [a.name for a in source.adapters],
            }
        )
    limits: dict[str, Any] = {
        "tiers": {name: {"rpm": t.rpm, "tpm": t.tpm} for name, t in sorted(spec.rate_limits.tiers.items())},
        "defaultTier": spec.rate_limits.default_tier,
    }
    if spec.users is not None:
        limits["usersFile"] = f"{_USERS_DIR}/{_USERS_KEY}"
    if spec.redis is not None:
        limits["redisUrl"] = spec.redis.url
        if spec.redis.password_secret_ref is not None:
            limits["redisPasswordFile"] = f"{_REDIS_DIR}/{_REDIS_PASSWORD_KEY}"
    standalone = spec.mode == "standalone"
    return GatewayConfig.model_validate(
        {
            "listen": {"host": "0.0.0.0", "grpcPort": GRPC_PORT, "httpPort": HTTP_PORT},
            "discovery": {"mode": "kubernetes", "namespace": plan.namespace},
            "models": models,
            "rateLimits": limits,
            # Fallback headers only mean something to our Envoy's shift filter.
            "fallbacks": NUM_RETRIES if standalone else 0,
            # Equal to Envoy's buffer, so a body Envoy passes on always fits the gRPC limit.
            "maxRequestBodyBytes": spec.max_request_body_bytes,
        }
    )


def _probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures}


def _gateway_workload(plan: Plan) -> dict[str, Any]:
    spec = _gateway(plan)
    mounts = [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": GATEWAY}}]
    if spec.users is not None:
        mounts.append({"name": "users", "mountPath": _USERS_DIR, "readOnly": True})
        volumes.append({"name": "users", "secret": {"secretName": spec.users.secret_ref}})
    if spec.redis is not None and spec.redis.password_secret_ref is not None:
        mounts.append({"name": "redis-password", "mountPath": _REDIS_DIR, "readOnly": True})
        secret = {"secretName": spec.redis.password_secret_ref, "items": [{"key": _REDIS_PASSWORD_KEY, "path": _REDIS_PASSWORD_KEY}]}
        volumes.append({"name": "redis-password", "secret": secret})
    container = {
        "name": "gateway",
        "image": plan.images.gateway,
        "imagePullPolicy": plan.images.pull_policy,
        "command": ["aibrix-gateway"],
        "args": ["--config", f"{_CONFIG_DIR}/gateway.yaml"],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": _probe("/healthz", "http", 5, 3),
        "livenessProbe": _probe("/healthz", "http", 10, 6),
        "volumeMounts": mounts,
        "securityContext": container_security(),
    }
    labels = selector(plan, COMPONENT, GATEWAY)
    pod_spec = _pod_spec(plan, GATEWAY, container, volumes)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(GATEWAY),
        "spec": {
            "replicas": spec.replicas,
            "serviceName": GATEWAY,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _pod_spec(plan: Plan, account: str, container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "serviceAccountName": account,
        "securityContext": pod_security(),
        "containers": [container],
        "volumes": volumes,
    }
    if plan.images.pull_secret_ref is not None:
        pod["imagePullSecrets"] = [{"name": plan.images.pull_secret_ref}]
    return pod


def _gateway_service(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(GATEWAY),
        "spec": {
            # Headless: Envoy resolves every replica (STRICT_DNS) and each pod gets a stable name.
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": selector(plan, COMPONENT, GATEWAY),
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


def _pdb(plan: Plan, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(plan, COMPONENT, name)}},
    }


def _envoy_objects(plan: Plan) -> list[dict[str, Any]]:
    spec = _gateway(plan)
    bootstrap = envoy_bootstrap(
        ext_proc_host=f"{GATEWAY}.{plan.namespace}.svc",
        ext_proc_port=GRPC_PORT,
        listener_port=ENVOY_PORT,
        admin_port=ENVOY_ADMIN_PORT,
        request_timeout_s=duration_seconds(spec.request_timeout),
        num_retries=NUM_RETRIES,
        per_connection_buffer_limit_bytes=int(spec.max_request_body_bytes),
    )
    config = config_map(ENVOY, {"envoy.yaml": dump_yaml(bootstrap)})
    labels = selector(plan, COMPONENT, ENVOY)
    tcp_probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "envoy",
        "image": plan.images.envoy,
        "imagePullPolicy": plan.images.pull_policy,
        "command": ["envoy"],
        "args": ["-c", "/etc/envoy/envoy.yaml", "--log-level", "info"],
        "ports": [{"name": "http", "containerPort": ENVOY_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": tcp_probe,
        "livenessProbe": {**tcp_probe, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "bootstrap", "mountPath": "/etc/envoy", "readOnly": True}],
        "securityContext": container_security(),
    }
    pod = _pod_spec(plan, ENVOY, container, [{"name": "bootstrap", "configMap": {"name": ENVOY}}])
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(ENVOY),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(ENVOY),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [config, service_account(ENVOY, api_access=False), deployment, service, _pdb(plan, ENVOY)]


def proxy_peers(plan: Plan) -> list[dict[str, Any]]:
    """NetworkPolicy peers of the proxies that carry client traffic to engines and ext_proc."""
    if _gateway(plan).mode == "standalone":
        return [{"podSelector": {"matchLabels": selector(plan, COMPONENT, ENVOY)}}]
    from .gateway_api import envoy_gateway_proxy_peer

    return [envoy_gateway_proxy_peer(plan)]


def _network_policy(name: str, pods: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name),
        "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": rules},
    }


def _engine_policy(plan: Plan) -> dict[str, Any]:
    from .autoscaling import scaler_peer

    engines = {"app.kubernetes.io/component": core.COMPONENT, "app.kubernetes.io/instance": plan.stack_name}
    ports = [{"protocol": "TCP", "port": p} for p in sorted({m.port for m in plan.models})]
    peers = [{"podSelector": {"matchLabels": selector(plan, COMPONENT, GATEWAY)}}, *proxy_peers(plan), PROMETHEUS_PEER]
    peers += [p for p in (scaler_peer(plan),) if p is not None]
    rules = [
        {"from": peers, "ports": ports},
        # Replicas of the stack's engines talk to each other on any port (NCCL, Ray, sidecars).
        {"from": [{"podSelector": {"matchLabels": engines}}]},
    ]
    return _network_policy("aibrix-engines", engines, rules)


def _gateway_policy(plan: Plan) -> dict[str, Any]:
    from .optimizer import optimizer_peer

    scrapers = [PROMETHEUS_PEER] + [p for p in (optimizer_peer(plan),) if p is not None]
    rules = [
        {"from": proxy_peers(plan), "ports": [{"protocol": "TCP", "port": GRPC_PORT}]},
        {"from": scrapers, "ports": [{"protocol": "TCP", "port": HTTP_PORT}]},
    ]
    return _network_policy(GATEWAY, selector(plan, COMPONENT, GATEWAY), rules)


def render(plan: Plan) -> list[Manifest]:
    """Every gateway object, or nothing when spec.gateway is off."""
    spec = _gateway(plan)
    if not spec.enabled:
        return []
    bodies: list[dict[str, Any]] = [
        config_map(GATEWAY, {"gateway.yaml": dump_config(gateway_config(plan))}),
        service_account(GATEWAY, api_access=True),
        *rbac(plan, GATEWAY, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]),
        _gateway_service(plan),
        _gateway_workload(plan),
        _pdb(plan, GATEWAY),
        _engine_policy(plan),
        _gateway_policy(plan),
    ]
    if spec.mode == "standalone":
        bodies += _envoy_objects(plan)
    else:
        from .gateway_api import render_gateway_api

        bodies += render_gateway_api(plan, gateway_service=GATEWAY, grpc_port=GRPC_PORT)
    return [Manifest(COMPONENT, body) for body in bodies]
