"""Compile a stack and turn the compiled output into what runs on loopback.

Where it sits: first step of ``aibrix-local``. The stack goes through the compiler's own
pipeline (:func:`compiler.pipeline.compile_manifests`), so an invalid stack fails with the
compiler's errors. Every component's configuration is then read **from the compiled
ConfigMaps** (gateway, Envoy bootstrap, KV pool, optimizer, scaler); the functions here
rewrite only what cannot hold on one machine: addresses become loopback, Kubernetes
discovery becomes a static endpoints file the runner keeps current, ports become 0 (the
component binds a free one and reports it) or free ones the runner picks,
Secrets become local files. Engines are sized from the plan and the catalogue.

Pure apart from nothing: no I/O, no ports. The runner passes the runtime values (ports,
paths) in.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from aibrix_spec.catalog import ACCELERATORS, MODEL_ARCHS
from compiler.manifest import Manifest
from compiler.pipeline import compile_manifests
from compiler.plan import Plan
from compiler.render.envoy_bootstrap import envoy_bootstrap
from compiler.render.gateway import envoy_contract

__all__ = ["DEV_API_KEY", "EngineGroup", "LocalInputError", "LocalStack", "envoy_config", "gateway_config",
           "kv_pool_config", "localize", "optimizer_config", "scaler_config", "users_file"]

#: The development API key written to the local users file (loopback only, never a real secret).
DEV_API_KEY = "sk-aibrix-local-dev"
#: At most this many simulated replicas per workload, so a laptop stays light.
MAX_LOCAL_REPLICAS = 4
#: The KV pool's capacity locally (the compiled one is sized for a cluster node).
LOCAL_KV_CAPACITY = 256 * 1024 * 1024
_FALLBACK_ARCH = "llama-3-8b"
_FALLBACK_ACCELERATOR = "nvidia-a100-80gb"


@dataclass(frozen=True)
class EngineGroup:
    """One workload's simulated engines: one ``aibrix-engine-sim`` process, one port per replica."""

    name: str  #: the workload (Deployment or RayCluster group) name; names the process and its log
    model: str  #: the OpenAI model name the engines serve (the gateway's model)
    arch: str  #: catalogue architecture the simulator models
    accelerator: str  #: catalogue accelerator the simulator models
    replicas: int
    tensor_parallel: int
    max_model_len: int
    scheduling_policy: str  #: vLLM's --scheduling-policy (priority: the gateway sets request priorities)
    pd_role: str  #: both, or a disaggregated model's prefill or decode role (engine_sim --pd-role)
    dialect: str  #: metric dialect (vllm or sglang), as the compiled gateway config names it
    adapters: tuple[str, ...]
    max_loras: int
    multi_node: bool  #: a KubeRay group in the cluster; one simulated endpoint per replica here
    scaled: bool = False  #: the stack's scaler owns its replicas: one engine process per pod, started on demand
    model_dir: str | None = None  #: real vLLM on the CPU from these weights (``--model-dir``); None = simulated
    command_args: tuple[str, ...] = ()  #: the compiled engine arguments (real engines start from them)
    env: tuple[tuple[str, str], ...] = ()  #: the compiled engine environment


class LocalInputError(ValueError):
    """A local option does not fit the stack (``--model-dir`` naming no model, ...): one line."""


@dataclass(frozen=True)
class LocalStack:
    """What ``aibrix-local`` runs for one stack, all taken from the compiled output."""

    name: str
    plan: Plan
    engines: tuple[EngineGroup, ...]
    gateway: dict[str, Any]  #: the compiled gateway.yaml (rewritten per run by :func:`gateway_config`)
    envoy: dict[str, Any] | None  #: the compiled Envoy bootstrap; None = built from the plan (no compiled one)
    kv_pool: dict[str, Any] | None  #: the compiled pool.yaml
    optimizer: dict[str, Any] | None  #: the compiled optimizer.yaml
    scaler: dict[str, Any] | None  #: the compiled scaler.yaml (rewritten per run by :func:`scaler_config`)
    uses_keys: bool  #: the stack names API keys: a development key is written locally
    names_redis: bool  #: the stack's gateway shares counters through Redis
    routes: dict[str, Any] | None  #: the compiled routes file (weighted routes), written locally per run
    notes: tuple[str, ...]  #: what differs from the cluster, said once at start


def _config_data(manifests: list[Manifest], name: str, key: str) -> dict[str, Any] | None:
    for manifest in manifests:
        if manifest.kind == "ConfigMap" and manifest.name == name:
            loaded = yaml.safe_load(manifest.body["data"][key])
            return loaded if isinstance(loaded, dict) else None
    return None


def _flag(args: tuple[str, ...], *names: str) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg in names:
            return args[i + 1]
    return None


def _with_front_door(text: str) -> str:
    """The stack with a one-replica standalone gateway added (stacks that compile to none)."""
    data = yaml.safe_load(text)
    data["spec"]["gateway"] = {"replicas": 1}
    return yaml.safe_dump(data, sort_keys=False)


def _scaled_workloads(scaler: dict[str, Any] | None) -> set[str]:
    return {t["scaleTargetRef"]["name"] for t in (scaler or {}).get("targets", [])
            if t["scaleTargetRef"].get("kind") == "Deployment"}


def _check_model_dirs(plan: Plan, model_dirs: dict[str, str]) -> dict[str, str]:
    """``--model-dir`` keys (a model's name or served name) -> model name; every key must name a vLLM model."""
    by_name = {m.name: m for m in plan.models} | {m.served_name: m for m in plan.models}
    out = {}
    for key, path in model_dirs.items():
        model = by_name.get(key)
        if model is None:
            raise LocalInputError(f'--model-dir {key}={path}: no model "{key}" in the stack; expected one of '
                                  f"{', '.join(sorted(m.name for m in plan.models))}")
        if model.engine != "vllm":
            raise LocalInputError(f"--model-dir {key}={path}: model {model.name} runs {model.engine}; "
                                  "real local engines are vLLM's CPU build only")
        out[model.name] = path
    return out


def _engine_groups(plan: Plan, notes: list[str], scaled: set[str], model_dirs: dict[str, str]) -> tuple[EngineGroup, ...]:
    groups = []
    for model in plan.models:
        model_dir = model_dirs.get(model.name)
        arch = model.arch if model.arch in MODEL_ARCHS else _FALLBACK_ARCH
        if arch != model.arch and model_dir is None:
            notes.append(f"model {model.name}: architecture not in the catalogue; simulated as {arch}")
        adapters = tuple(a.name for a in model.adapters.adapters) if model.adapters is not None else ()
        max_loras = model.adapters.max_loras if model.adapters is not None else 4
        args = model.command.args
        max_len = int(_flag(args, "--max-model-len", "--context-length") or 8192)
        for workload in model.workloads:
            accelerator = workload.pool.accelerator or ""
            if accelerator not in ACCELERATORS:
                if model_dir is None:
                    notes.append(f"pool {workload.pool.name}: accelerator not in the catalogue; "
                                 f"simulated as {_FALLBACK_ACCELERATOR}")
                accelerator = _FALLBACK_ACCELERATOR
            planned = workload.replicas if workload.replicas is not None else 1
            replicas = max(1, min(planned, 1 if model_dir else MAX_LOCAL_REPLICAS))
            if replicas != planned:
                notes.append(f"{workload.name}: {replicas} simulated replicas locally (the plan has {planned})")
            if workload.multi_node:
                notes.append(f"{workload.name}: multi-node (KubeRay, {workload.nodes} pods per replica); "
                             "one simulated engine stands in for each replica's Ray group")
            command = workload.command or model.command  # a disaggregated role's own engine flags
            groups.append(EngineGroup(
                name=workload.name, model=model.served_name, arch=arch, accelerator=accelerator, replicas=replicas,
                tensor_parallel=workload.gpus_per_replica, max_model_len=max_len,
                scheduling_policy=_flag(command.args, "--scheduling-policy") or "fcfs",
                pd_role=workload.role or "both", dialect=model.engine,
                adapters=() if model_dir else adapters, max_loras=max(max_loras, len(adapters)),
                multi_node=workload.multi_node, scaled=workload.name in scaled and model_dir is None,
                model_dir=model_dir, command_args=command.args, env=model.env,
            ))
        if model.disaggregation is not None and model.disaggregation.transfer != "nixl":
            notes.append(f"model {model.name}: disaggregated; locally the simulated decode engines receive the "
                         "prefill's KV only with transfer nixl (the gateway sends them its parameters), so with "
                         f"{model.disaggregation.transfer} they compute the prompt again")
        if model_dir is not None:
            notes.append(f"model {model.name}: real vLLM on the CPU from {model_dir}, one replica per workload, "
                         "no autoscaling" + (", adapters not loaded" if adapters else ""))
    return tuple(groups)


def localize(text: str, *, source_name: str, model_dirs: dict[str, str] | None = None) -> LocalStack:
    """Compile ``text`` and collect what runs locally; raises the compiler's errors unchanged,
    and :class:`LocalInputError` for a ``model_dirs`` key naming no vLLM model."""
    plan, manifests = compile_manifests(text, source_name=source_name)
    real_pd = sorted(m.name for m in plan.models if m.disaggregation is not None and m.name in (model_dirs or {}))
    if real_pd:
        raise LocalInputError(
            f"--model-dir {real_pd[0]}=...: the model is disaggregated (prefill/decode roles); aibrix-local runs "
            "disaggregated models on simulated engines only (real vLLM pairs: tests/real_engine/test_pd_with_real_vllm.py)"
        )
    notes: list[str] = []
    if plan.gateway is None:
        # The stack has no front door: add the gateway the compiler renders by default, so
        # every model still answers on one OpenAI URL, exactly as that gateway would route.
        plan, manifests = compile_manifests(_with_front_door(text), source_name=source_name)
        notes.append("the stack has no gateway: locally the compiler's default gateway and Envoy front its models "
                     "(in the cluster, clients call each model's Service)")
    gw = plan.gateway
    assert gw is not None
    gateway = _config_data(manifests, gw.router.name, "gateway.yaml")
    assert gateway is not None, "the compiled gateway ConfigMap is missing"
    envoy = _config_data(manifests, gw.envoy.name, "envoy.yaml") if gw.envoy is not None else None
    if envoy is None:
        notes.append("gateway.mode envoy-gateway: no compiled Envoy bootstrap (Envoy Gateway builds it in the "
                     "cluster); locally our own Envoy runs the standalone bootstrap built from the same plan")
    kv_pool = optimizer = scaler = None
    if plan.kv_pool is not None:
        kv_pool = _config_data(manifests, plan.kv_pool.component.name, "pool.yaml")
        notes.append(f"KV pool: one member on loopback, capacity {LOCAL_KV_CAPACITY // 2**20} MiB "
                     f"(the plan has {plan.kv_pool.replicas} x {plan.kv_pool.memory_per_replica})")
    if plan.optimizer is not None:
        optimizer = _config_data(manifests, plan.optimizer.component.name, "optimizer.yaml")
    if plan.scaler is not None:
        scaler = _config_data(manifests, plan.scaler.component.name, "scaler.yaml")
        notes.append("autoscaler: runs against a local stand-in for the Kubernetes API; each replica of a workload "
                     f"it scales is one engine process (at most {MAX_LOCAL_REPLICAS} per workload)")
    if any(m.adapters is not None for m in plan.models):
        notes.append("LoRA adapters: loaded into every simulated engine at start (the sidecar, which fetches them "
                     "from their sources, does not run locally)")
    routes = _config_data(manifests, f"{gw.router.name}-routes", "routes.yaml") if gateway.get("routesFile") else None
    if gateway.get("tracing"):
        notes.append("tracing: spans are not exported locally (the stack's OTLP collector is a cluster address)")
    limits = gateway.get("rateLimits", {})
    return LocalStack(
        name=plan.stack_name, plan=plan,
        engines=_engine_groups(plan, notes, _scaled_workloads(scaler), _check_model_dirs(plan, model_dirs or {})),
        gateway=gateway, envoy=envoy,
        kv_pool=kv_pool, optimizer=optimizer, scaler=scaler, uses_keys=bool(limits.get("usersFile")),
        names_redis=bool(limits.get("redisUrl")), routes=routes, notes=tuple(dict.fromkeys(notes)),
    )


def _widest_tier(gateway: dict[str, Any]) -> str | None:
    tiers = gateway.get("rateLimits", {}).get("tiers", {})
    return max(sorted(tiers), key=lambda name: (tiers[name]["rpm"], tiers[name]["tpm"])) if tiers else None


def users_file(stack: LocalStack) -> dict[str, Any]:
    """The local users file: one development key on the stack's widest tier."""
    user: dict[str, Any] = {"name": "local-dev", "apiKey": DEV_API_KEY}
    tier = _widest_tier(stack.gateway)
    if tier is not None:
        user["tier"] = tier
    return {"users": [user]}


def gateway_config(stack: LocalStack, *, endpoints_file: str, users_file: str | None,
                   redis_url: str | None, routes_file: str | None = None) -> dict[str, Any]:
    """The compiled gateway.yaml on loopback: static discovery, local users, routes file and Redis."""
    config = copy.deepcopy(stack.gateway)
    config["listen"] = {"host": "127.0.0.1", "grpcPort": 0, "httpPort": 0}
    config["discovery"] = {"mode": "static", "endpointsFile": endpoints_file, "pollIntervalS": 0.2}
    for model in config.get("models", []):
        model.pop("selector", None)  # pod labels mean nothing to static discovery
    limits = config.setdefault("rateLimits", {})
    if users_file is not None:
        limits["usersFile"] = users_file
    else:
        limits.pop("usersFile", None)
    limits.pop("redisPasswordFile", None)  # the local Redis has no password
    if redis_url is not None:
        limits["redisUrl"] = redis_url
    else:
        limits.pop("redisUrl", None)
    if redis_url is not None and "routingState" in config:
        config["routingState"] = {**config["routingState"], "redisUrl": redis_url}
        config["routingState"].pop("redisPasswordFile", None)
    else:
        config.pop("routingState", None)  # one local gateway: nothing to share
    if routes_file is not None:
        config["routesFile"] = routes_file
    else:
        config.pop("routesFile", None)
    config.pop("tracing", None)
    # Scrape often: the local stack is small, and fresh metrics make the status table live.
    config["scrape"] = {**config.get("scrape", {}), "intervalS": 0.25}
    return config


def envoy_config(stack: LocalStack, *, grpc_port: int, listener_port: int, admin_port: int) -> dict[str, Any]:
    """The Envoy bootstrap on loopback: the compiled one with addresses and ports rewritten, or
    (mode envoy-gateway) the standalone bootstrap built from the same plan values."""
    gw = stack.plan.gateway
    assert gw is not None
    if stack.envoy is None:
        return envoy_bootstrap(
            ext_proc_host="127.0.0.1", ext_proc_port=grpc_port, listener_port=listener_port,
            listener_address="127.0.0.1", admin_port=admin_port, request_timeout_s=gw.request_timeout_s,
            num_retries=gw.num_retries, per_connection_buffer_limit_bytes=gw.max_request_body_bytes,
            **envoy_contract(stack.plan, gw),
        )
    config = copy.deepcopy(stack.envoy)
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin_port}
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listener_port}
    for cluster in config["static_resources"]["clusters"]:
        if cluster.get("load_assignment") is None:
            continue  # the ORIGINAL_DST engines cluster: the gateway's header names the engine
        cluster["type"] = "STATIC"  # the gateway's headless Service becomes one loopback address
        cluster.pop("dns_lookup_family", None)
        for group in cluster["load_assignment"]["endpoints"]:
            for lb in group["lb_endpoints"]:
                lb["endpoint"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": grpc_port}
    return config


def kv_pool_config(stack: LocalStack) -> dict[str, Any]:
    """The compiled pool.yaml for one loopback member (ports come from the command line)."""
    assert stack.kv_pool is not None
    config = copy.deepcopy(stack.kv_pool)
    server = config.setdefault("server", {})
    server.update({"host": "127.0.0.1", "port": 0, "metricsPort": 0,
                   "capacity": min(int(server.get("capacity", LOCAL_KV_CAPACITY)), LOCAL_KV_CAPACITY)})
    server["shm"] = {"enabled": False}
    config.get("client", {}).get("members", {}).update({"source": "static", "addresses": []})
    config.pop("client", None)  # engines are simulated here: no pool client runs
    return config


def optimizer_config(stack: LocalStack, *, gateway_metrics_url: str) -> dict[str, Any]:
    """The compiled optimizer.yaml reading the local gateway's token histogram."""
    assert stack.optimizer is not None
    config = copy.deepcopy(stack.optimizer)
    workload = config.setdefault("workload", {})
    workload["gatewayMetricsUrls"] = [gateway_metrics_url]
    # Profiles come from a ConfigMap in the cluster; locally they are derived from the roofline model.
    config.pop("profilesDir", None)
    config["deriveMissingProfiles"] = True
    return config


def scaler_config(stack: LocalStack, *, optimizer_url: str | None) -> dict[str, Any]:
    """The compiled scaler.yaml against the local stand-in API: targets of local workloads only,
    the optimizer's gauge read from the local optimizer, replicas capped for a laptop."""
    assert stack.scaler is not None
    config = copy.deepcopy(stack.scaler)
    local = {g.name for g in stack.engines if g.scaled}
    targets = []
    for target in config.get("targets", []):
        if target["scaleTargetRef"]["name"] not in local:
            continue
        target["maxReplicas"] = min(int(target.get("maxReplicas", MAX_LOCAL_REPLICAS)), MAX_LOCAL_REPLICAS)
        target["minReplicas"] = min(int(target.get("minReplicas", 1)), target["maxReplicas"])
        optimizer = target.get("metric", {}).get("optimizer")
        if optimizer is not None and optimizer_url is not None:
            optimizer["url"] = optimizer_url
        targets.append(target)
    config["targets"] = targets
    return config
