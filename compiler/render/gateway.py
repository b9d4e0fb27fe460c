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
- NetworkPolicies with the peers the plan decided (:class:`compiler.plan.NetworkPlan`):
  gateway pods accept ext_proc only from the proxies and metric scrapes only from the
  optimizer and the scrapers; our Envoy accepts the clients (``network.clients``, default any).

``gateway.workers`` N > 1 (standalone only): each gateway pod runs N worker processes
(``workers`` in gateway.yaml), exposes ext_proc ports grpcPort .. grpcPort+N-1 (the
NetworkPolicy admits the range), and requests N times the CPU of one worker.

``mode: standalone``: our own Envoy (Deployment ``aibrix-envoy``, its Service and a ConfigMap
with the bootstrap of :func:`.envoy_bootstrap.envoy_bootstrap`: ext_proc to every gateway
replica and worker port through the headless Service, ORIGINAL_DST on the gateway's destination header,
``numRetries`` fallbacks, the route timeout = ``gateway.requestTimeout``).

``mode: envoy-gateway``: objects of :mod:`.gateway_api` for an installed Envoy Gateway.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec.components.gateway import GatewayConfig, ext_proc_headers, needs_request_ids
from aibrix_spec.traffic import RoutesFile

from ..manifest import HOT_RELOADED, Manifest
from ..plan import DisaggregationPlan, GatewayPlan, Plan
from ..serialize import dump_yaml
from .component_parts import (
    config_map,
    container_security,
    dump_config,
    meta,
    network_policy,
    pdb,
    pod_security,
    rbac,
    service_account,
    with_pull_secrets,
)
from .envoy_bootstrap import envoy_bootstrap
from .gateway_api import render_gateway_api

__all__ = ["COMPONENT", "gateway_config", "render"]

COMPONENT = "gateway"
_CONFIG_DIR = "/etc/aibrix/gateway"
_USERS_DIR = "/etc/aibrix/users"
_ROUTES_DIR = "/etc/aibrix/routes"
_ROUTES_KEY = "routes.yaml"
_USERS_KEY = "users.yaml"
_REDIS_DIR = "/etc/aibrix/redis"
_REDIS_PASSWORD_KEY = "password"  # the key RedisSpec.passwordSecretRef documents


def gateway_config(plan: Plan, gw: GatewayPlan) -> GatewayConfig:
    """The gateway's config file, validated by the gateway's own model."""
    models = [
        {
            "name": model.served_name,
            "selector": dict(model.selector),
            "port": model.port,
            "routing": model.routing,
            "adapters": [a.name for a in model.adapters.adapters] if model.adapters is not None else [],
            "engine": model.engine,  # the metric dialect the scraper reads
            **({"kvEventsPort": model.kv_events_port} if model.kv_events_port is not None else {}),
            **({"enginePriority": True} if model.engine_priority else {}),
            **({"disaggregation": _disaggregation(model.disaggregation)} if model.disaggregation is not None else {}),
        }
        for model in plan.models
    ]
    limits: dict[str, Any] = {
        "tiers": {name: {"rpm": rpm, "tpm": tpm, **({"priority": priority} if priority else {})}
                  for name, rpm, tpm, priority in gw.tiers},
        "defaultTier": gw.default_tier,
    }
    if gw.users_secret is not None:
        limits["usersFile"] = f"{_USERS_DIR}/{_USERS_KEY}"
    routing_state: dict[str, Any] = {}
    if gw.redis_url is not None:
        limits["redisUrl"] = gw.redis_url
        # The same Redis carries the prefix indexes and session tables between replicas.
        routing_state = {"redisUrl": gw.redis_url, "streamKey": gw.routing_stream_key}
        if gw.redis_password_secret is not None:
            limits["redisPasswordFile"] = f"{_REDIS_DIR}/{_REDIS_PASSWORD_KEY}"
            routing_state["redisPasswordFile"] = limits["redisPasswordFile"]
    return GatewayConfig.model_validate(
        {
            "listen": {"host": "0.0.0.0", "grpcPort": gw.grpc_port, "httpPort": gw.http_port},
            "discovery": {"mode": "kubernetes", "namespace": plan.namespace},
            "models": models,
            "rateLimits": limits,
            **({"routingState": routing_state} if routing_state else {}),
            **({"routesFile": f"{_ROUTES_DIR}/{_ROUTES_KEY}"} if gw.routes else {}),
            **({"tracing": {"otlpEndpoint": gw.tracing[0], "samplingRatio": gw.tracing[1]}} if gw.tracing else {}),
            "fallbacks": gw.num_retries,
            **({"workers": gw.workers} if gw.workers > 1 else {}),
            # Equal to Envoy's buffer, so a body Envoy passes on always fits the gRPC limit.
            "maxRequestBodyBytes": gw.max_request_body_bytes,
            **({"flowControl": gw.flow_control.model_dump(mode="json", by_alias=True, exclude_defaults=True)}
               if gw.flow_control.enabled else {}),
        }
    )


def envoy_contract(plan: Plan, gw: GatewayPlan) -> dict[str, Any]:
    """What Envoy must do for this gateway, as ``envoy_bootstrap`` arguments: forward the headers
    its config reads and the routes' session headers, and generate request ids only when it
    uses them."""
    config = gateway_config(plan, gw)
    return {
        "forward_headers": ext_proc_headers(config, (r.session_header for r in gw.routes if r.sticky == "session")),
        "generate_request_ids": needs_request_ids(config),
    }


def _disaggregation(pd: DisaggregationPlan) -> dict[str, Any]:
    """The pairing the gateway runs: where the prefill pods are, the transfer, and the prompt
    length below which a request is decoded in place (prefill routing and timeout: the
    gateway's defaults)."""
    return {
        "prefillSelector": dict(pd.prefill_selector),
        "prefillPort": pd.prefill_port,
        "transfer": pd.transfer,
        "minPromptTokens": pd.min_prompt_tokens,
        **({"bootstrapPort": pd.bootstrap_port} if pd.bootstrap_port is not None else {}),
        **({} if pd.short_prompts_on_prefill_pods else {"shortPromptsOnPrefillPods": False}),
    }


def _routes_config_map(name: str, gw: GatewayPlan) -> dict[str, Any]:
    """The routes file, hot-reloaded by the gateway: a weight change reaches running pods
    through the kubelet's ConfigMap refresh (about a minute) without rolling them, so it is
    left out of the pods' config checksum."""
    body = config_map(f"{name}-routes", {_ROUTES_KEY: dump_config(RoutesFile(routes=list(gw.routes)))})
    body["metadata"]["annotations"] = {HOT_RELOADED: "true"}
    return body


def _probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures}


def _pod_spec(plan: Plan, account: str, container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    pod = {"serviceAccountName": account, "securityContext": pod_security(), "containers": [container], "volumes": volumes}
    return with_pull_secrets(plan, pod)


def _gateway_resources(workers: int) -> dict[str, Any]:
    """Half a core and 512Mi for one worker; each further worker adds the same CPU and 256Mi
    (the supervisor is idle but for /metrics scrapes)."""
    memory = 512 + 256 * (workers - 1)
    limit = f"{2 * memory // 1024}Gi" if (2 * memory) % 1024 == 0 else f"{2 * memory}Mi"
    return {"requests": {"cpu": f"{500 * workers}m", "memory": f"{memory}Mi"}, "limits": {"memory": limit}}


def _gateway_workload(plan: Plan, gw: GatewayPlan) -> dict[str, Any]:
    name = gw.router.name
    mounts = [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": name}}]
    if gw.users_secret is not None:
        mounts.append({"name": "users", "mountPath": _USERS_DIR, "readOnly": True})
        volumes.append({"name": "users", "secret": {"secretName": gw.users_secret}})
    if gw.routes:
        mounts.append({"name": "routes", "mountPath": _ROUTES_DIR, "readOnly": True})
        volumes.append({"name": "routes", "configMap": {"name": f"{name}-routes"}})
    if gw.redis_password_secret is not None:
        mounts.append({"name": "redis-password", "mountPath": _REDIS_DIR, "readOnly": True})
        secret = {"secretName": gw.redis_password_secret, "items": [{"key": _REDIS_PASSWORD_KEY, "path": _REDIS_PASSWORD_KEY}]}
        volumes.append({"name": "redis-password", "secret": secret})
    container = {
        "name": "gateway",
        "image": gw.router.image,
        "imagePullPolicy": plan.pull_policy,
        "command": ["aibrix-gateway"],
        "args": ["--config", f"{_CONFIG_DIR}/gateway.yaml"],
        "ports": [
            *({"name": "grpc" if i == 0 else f"grpc-{i}", "containerPort": gw.grpc_port + i, "protocol": "TCP"}
              for i in range(gw.workers)),
            {"name": "http", "containerPort": gw.http_port, "protocol": "TCP"},
        ],
        "resources": _gateway_resources(gw.workers),
        "readinessProbe": _probe("/healthz", "http", 5, 3),
        "livenessProbe": _probe("/healthz", "http", 10, 6),
        "volumeMounts": mounts,
        "securityContext": container_security(),
    }
    labels = gw.router.match_labels
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name),
        "spec": {
            "replicas": gw.replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(plan, name, container, volumes)},
        },
    }


def _gateway_service(gw: GatewayPlan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(gw.router.name),
        "spec": {
            # Headless: Envoy resolves every replica (STRICT_DNS) and each pod gets a stable name.
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": gw.router.match_labels,
            "ports": [
                {
                    "name": "grpc",
                    "port": gw.grpc_port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
                {"name": "http", "port": gw.http_port, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


def _envoy_objects(plan: Plan, gw: GatewayPlan) -> list[dict[str, Any]]:
    envoy = gw.envoy
    assert envoy is not None  # standalone mode
    bootstrap = envoy_bootstrap(
        ext_proc_host=gw.service_dns,
        ext_proc_port=gw.grpc_port,
        ext_proc_workers=gw.workers,
        listener_port=gw.envoy_port,
        admin_port=gw.envoy_admin_port,
        request_timeout_s=gw.request_timeout_s,
        num_retries=gw.num_retries,
        per_connection_buffer_limit_bytes=gw.max_request_body_bytes,
        ext_proc_message_timeout_s=gw.ext_proc_message_timeout_s,
        **envoy_contract(plan, gw),
    )
    config = config_map(envoy.name, {"envoy.yaml": dump_yaml(bootstrap)})
    labels = envoy.match_labels
    tcp_probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "envoy",
        "image": envoy.image,
        "imagePullPolicy": plan.pull_policy,
        "command": ["envoy"],
        # Envoy's default is one worker thread per core of the *node*, whatever the pod's CPU:
        # on a 64-core node, 64 threads with a share of a core, each with its own connections
        # to every gateway worker. It serves as many requests as the gateway pod's workers and
        # costs about as much CPU per request (docs/gateway.md), so it gets as many threads
        # and as much CPU.
        "args": ["-c", "/etc/envoy/envoy.yaml", "--log-level", "info", "--concurrency", str(gw.workers)],
        "ports": [{"name": "http", "containerPort": gw.envoy_port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": f"{500 * gw.workers}m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": tcp_probe,
        "livenessProbe": {**tcp_probe, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "bootstrap", "mountPath": "/etc/envoy", "readOnly": True}],
        "securityContext": container_security(),
    }
    pod = _pod_spec(plan, envoy.name, container, [{"name": "bootstrap", "configMap": {"name": envoy.name}}])
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(envoy.name),
        "spec": {
            "replicas": gw.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(envoy.name),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    budget = pdb(plan, meta(envoy.name), labels)
    # Clients reach Envoy's listener (any source unless network.clients names them); the admin
    # port listens on loopback only.
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": gw.envoy_port}]}
    if plan.network.to_envoy:
        rule = {"from": list(plan.network.to_envoy), **rule}
    policy = network_policy(envoy.name, labels, [rule])
    return [config, service_account(envoy.name, api_access=False), deployment, service, budget, policy]


def _gateway_policy(gw: GatewayPlan, plan: Plan) -> dict[str, Any]:
    grpc: dict[str, Any] = {"protocol": "TCP", "port": gw.grpc_port}
    if gw.workers > 1:  # one ext_proc port per worker
        grpc["endPort"] = gw.grpc_port + gw.workers - 1
    rules = [
        {"from": list(plan.network.to_gateway_grpc), "ports": [grpc]},
        {"from": list(plan.network.to_gateway_http), "ports": [{"protocol": "TCP", "port": gw.http_port}]},
    ]
    return network_policy(gw.router.name, gw.router.match_labels, rules)


def render(plan: Plan) -> list[Manifest]:
    """Every gateway object, or nothing when spec.gateway is off."""
    gw = plan.gateway
    if gw is None:
        return []
    name = gw.router.name
    bodies: list[dict[str, Any]] = [
        config_map(name, {"gateway.yaml": dump_config(gateway_config(plan, gw))}),
        *([_routes_config_map(name, gw)] if gw.routes else []),
        service_account(name, api_access=True),
        *rbac(plan, name, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]),
        _gateway_service(gw),
        _gateway_workload(plan, gw),
        pdb(plan, meta(name), gw.router.match_labels),
        _gateway_policy(gw, plan),
    ]
    bodies += _envoy_objects(plan, gw) if gw.envoy is not None else render_gateway_api(plan, gw)
    return [Manifest(COMPONENT, body) for body in bodies]
