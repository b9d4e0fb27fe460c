"""Planning the stack's own components and the wiring between them.

Each ``plan_*`` function returns the component's plan entry (or None when it is off):
its name, selector, image, ports and the URLs others reach it by. :func:`plan_network`
then decides who may reach whom from those entries, so no renderer asks another.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec import AUTOSCALING_METRICS, AutoscalingSpec, PeerSpec
from aibrix_spec.catalog import ACCELERATORS
from aibrix_spec.components.gateway import DisaggregationConfig, FlowControlConfig
from aibrix_spec.engine_metrics import translate_name
from aibrix_spec.traffic import RouteSpec

from ..defaults import ResolvedStack
from .checks import optimized_models
from .disaggregation import pd_link
from .durations import duration_seconds
from .models import split
from .names import (
    DIAG,
    DIAG_METRICS_PORT,
    ENGINE,
    ENVOY,
    ENVOY_ADMIN_PORT,
    ENVOY_PORT,
    GATEWAY,
    GATEWAY_GRPC_PORT,
    GATEWAY_HTTP_PORT,
    GATEWAY_RETRIES,
    KV_METRICS_PORT,
    KV_POOL,
    KV_POOL_PORT,
    OPTIMIZER,
    OPTIMIZER_PORT,
    SCALER,
    SCALER_METRICS_PORT,
)
from .types import (
    Component,
    DiagnosticsPlan,
    GatewayPlan,
    KvPoolPlan,
    ModelPlan,
    NetworkPlan,
    ObservabilityPlan,
    OptimizedModel,
    OptimizerPlan,
    OptimizerPool,
    PoolPlan,
    ScalerPlan,
    ScaleTarget,
    WorkloadPlan,
)

__all__ = [
    "ENVOY_GATEWAY_NAME",
    "NAMESPACE_NAME_LABEL",
    "duration_seconds",
    "plan_diagnostics",
    "plan_gateway",
    "plan_kv_pool",
    "plan_network",
    "plan_observability",
    "plan_optimizer",
    "plan_scale_targets",
    "plan_scaler",
]

#: The Gateway object under Envoy Gateway; its proxies carry owning-gateway labels naming it.
ENVOY_GATEWAY_NAME = "aibrix"

#: The namespace label the API server sets on every namespace (users cannot set it).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

def _component(stack: ResolvedStack, component: str, name: str, image: str) -> Component:
    selector = {
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": stack.name,
        "app.kubernetes.io/name": name,
    }
    return Component(name=name, component=component, image=image, selector=tuple(sorted(selector.items())))


#: Envoy's ext_proc per-message timeout when nothing is held (the gateway answers in milliseconds).
EXT_PROC_MESSAGE_TIMEOUT_S = 5.0
#: The gateway's wait for a prefill pod (its default prefillTimeoutS, which the compiler keeps).
PREFILL_TIMEOUT_S: float = DisaggregationConfig.model_fields["prefill_timeout_s"].default


def plan_gateway(stack: ResolvedStack) -> GatewayPlan | None:
    spec = stack.gateway
    if not spec.enabled:
        return None
    router = _component(stack, "gateway", GATEWAY, stack.images.gateway)
    fc = spec.flow_control
    flow = FlowControlConfig(
        enabled=fc.enabled, queue_timeout_s=duration_seconds(fc.queue_timeout), max_queue_per_model=fc.max_queue_per_model,
        saturation=fc.saturation, fairness=fc.fairness, allow_priority_header=fc.allow_priority_header,
    )
    standalone = spec.mode == "standalone"
    envoy = _component(stack, "gateway", ENVOY, stack.images.envoy) if standalone else None
    if envoy is not None:
        proxies: tuple[dict[str, Any], ...] = (envoy.peer,)
    else:
        labels = {
            "gateway.envoyproxy.io/owning-gateway-name": ENVOY_GATEWAY_NAME,
            "gateway.envoyproxy.io/owning-gateway-namespace": stack.namespace,
        }
        # Envoy Gateway's controller sets these labels on the proxies it runs in its own namespace.
        namespace = {"matchLabels": {NAMESPACE_NAME_LABEL: spec.envoy_gateway_namespace}}
        proxies = ({"namespaceSelector": namespace, "podSelector": {"matchLabels": labels}},)
    return GatewayPlan(
        router=router,
        envoy=envoy,
        mode=spec.mode,
        replicas=spec.replicas,
        workers=spec.workers,
        grpc_port=GATEWAY_GRPC_PORT,
        http_port=GATEWAY_HTTP_PORT,
        envoy_port=ENVOY_PORT,
        envoy_admin_port=ENVOY_ADMIN_PORT,
        # Fallback headers only mean something to our Envoy's shift filter.
        num_retries=GATEWAY_RETRIES if standalone else 0,
        request_timeout_s=duration_seconds(spec.request_timeout),
        max_request_body_bytes=int(spec.max_request_body_bytes),
        gateway_class_name=spec.gateway_class_name,
        service_dns=f"{GATEWAY}.{stack.namespace}.svc",
        metrics_urls=gateway_metrics_urls(stack),
        users_secret=spec.users.secret_ref if spec.users is not None else None,
        redis_url=spec.redis.url if spec.redis is not None else None,
        redis_password_secret=spec.redis.password_secret_ref if spec.redis is not None else None,
        # Stacks sharing one Redis must not share routing state: the key names the stack.
        routing_stream_key=f"aibrix:{stack.namespace}:{stack.name}:routing-state",
        routes=_routes(stack),
        tracing=(tracing.otlp_endpoint, tracing.sampling_ratio) if (tracing := stack.observability.tracing) else None,
        tiers=tuple((name, t.rpm, t.tpm, t.priority) for name, t in sorted(spec.rate_limits.tiers.items())),
        default_tier=spec.rate_limits.default_tier,
        proxy_peers=proxies,
        flow_control=flow,
        # Envoy must wait for the gateway's answer to the request body: the usual 5 s, plus the
        # queue timeout of a held request, plus the prefill call of a disaggregated model.
        ext_proc_message_timeout_s=EXT_PROC_MESSAGE_TIMEOUT_S + (flow.queue_timeout_s if flow.enabled else 0.0)
        + (PREFILL_TIMEOUT_S if any(m.spec.disaggregation is not None for m in stack.models) else 0.0),
    )


def gateway_metrics_urls(stack: ResolvedStack) -> tuple[str, ...]:
    """Every gateway replica's /metrics (stable StatefulSet names)."""
    return tuple(
        f"http://{GATEWAY}-{i}.{GATEWAY}.{stack.namespace}.svc:{GATEWAY_HTTP_PORT}/metrics"
        for i in range(stack.gateway.replicas)
    )


def _routes(stack: ResolvedStack) -> tuple[RouteSpec, ...]:
    """The stack's routes as the gateway reads them: targets by served model name."""
    served = {m.name: m.served_name for m in stack.models}
    return tuple(
        route.model_copy(update={"targets": [t.model_copy(update={"model": served[t.model]}) for t in route.targets]})
        for route in stack.routes
    )


def _optimizer_url(stack: ResolvedStack) -> str:
    return f"http://{OPTIMIZER}.{stack.namespace}.svc:{OPTIMIZER_PORT}/metrics"


def plan_scale_targets(stack: ResolvedStack, models: tuple[ModelPlan, ...]) -> tuple[ScaleTarget, ...]:
    """One target per autoscaled workload. Bounds: a model on n pools splits ``replicas.min``
    (and, for engine metrics, ``replicas.max``) like a fixed count; on the optimizer's metric
    every pool may grow to the model's max (the optimizer caps the total). The lower bound is
    at least 1 unless a KPA may scale to zero."""
    out: list[ScaleTarget] = []
    for model in models:
        resolved = stack.models[model.index]
        # A disaggregated model scales each role on its own: its own policy, metric and bounds.
        units = (
            [(role.autoscaling, role.replicas_min, role.replicas_max, model.role_workloads(role.role)) for role in resolved.roles]
            if resolved.roles
            else [(resolved.spec.autoscaling, model.replicas_min, model.replicas_max, model.workloads)]
        )
        for spec, replicas_min, replicas_max, workloads in units:
            if spec.policy == "none":
                continue
            out += _targets(stack, model, spec, replicas_min, replicas_max, workloads)
    return tuple(out)


def _targets(
    stack: ResolvedStack,
    model: ModelPlan,
    spec: AutoscalingSpec,
    replicas_min: int,
    replicas_max: int,
    workloads: tuple[WorkloadPlan, ...],
) -> list[ScaleTarget]:
    out: list[ScaleTarget] = []
    if spec.policy == "none":
        return out
    metric = AUTOSCALING_METRICS[spec.metric]
    # Engine metrics in the engine's own names (SGLang: sglang:num_running_reqs ...), so the
    # compiled HPA and KEDA queries read what its pods export.
    names = (
        metric.names
        if metric.source != "engine"
        else tuple(n for name in metric.names for n in translate_name(name, model.engine))
    )
    n = len(workloads)
    flow_control = stack.gateway.enabled and stack.gateway.flow_control.enabled
    lows, highs = split(replicas_min, n), split(replicas_max, n)
    for k, workload in enumerate(workloads):
        low = lows[k]
        high = replicas_max if metric.source == "optimizer" else highs[k]
        # 0 stays 0 where something scales from zero: a KPA, or a model whose replicas.min is 0
        # (check_flow_control allowed it only with kpa, apa or KEDA, and flow control on).
        low = low if low == 0 and (spec.policy == "kpa" or replicas_min == 0) else max(1, low)
        from_zero = low == 0 and replicas_min == 0
        # Under flow control the engines' queues are capped (requests past the saturation
        # thresholds wait at the gateway), so our scaler also reads the held requests: without
        # them a busy model's demand looks no larger than the cap. KEDA reads them only to
        # wake a workload from zero (its trigger's unit is the engine metric's).
        held_demand = from_zero or (flow_control and spec.policy in ("kpa", "apa") and not spec.use_keda)
        out.append(
            ScaleTarget(
                model=model.name,
                served_name=model.served_name,
                workload=workload.name,
                pool=workload.pool.name,
                low=low,
                high=max(low, high, 1),
                policy=spec.policy,
                use_keda=spec.use_keda,
                metric=names[0],
                metric_names=names,
                engine=model.engine,
                source=metric.source,
                target=spec.target,
                engine_port=model.port,
                pod_selector=workload.selector,
                optimizer_url=_optimizer_url(stack) if metric.source == "optimizer" else None,
                scale_to_zero_grace_s=duration_seconds(spec.scale_to_zero_grace) if from_zero else None,
                demand_urls=gateway_metrics_urls(stack) if held_demand else (),
            )
        )
    return out


def plan_scaler(stack: ResolvedStack, targets: tuple[ScaleTarget, ...]) -> ScalerPlan | None:
    """The aibrix-scaler runs when any workload uses KPA or APA."""
    ours = tuple(t for t in targets if t.policy in ("kpa", "apa"))
    if not ours:
        return None
    return ScalerPlan(
        component=_component(stack, "autoscaler", SCALER, stack.images.scaler), metrics_port=SCALER_METRICS_PORT, targets=ours
    )


def plan_optimizer(stack: ResolvedStack, models: tuple[ModelPlan, ...], gateway: GatewayPlan | None) -> OptimizerPlan | None:
    spec = stack.optimizer
    if not spec.enabled:
        return None
    placed = [models[i] for i in optimized_models(stack)]
    used = {w.pool.name for m in placed for w in m.workloads}
    pools = tuple(
        OptimizerPool(
            name=p.name,
            accelerator=p.accelerator or p.product,
            cost_per_gpu_hour=p.cost_per_gpu_hour,
            max_gpus=p.max_nodes * p.gpus_per_node if p.max_nodes is not None else None,
        )
        for p in stack.pools
        if p.name in used
    )
    entries = tuple(
        OptimizedModel(
            name=m.served_name,
            pools=tuple(w.pool.name for w in m.workloads),
            gpus_per_replica=m.gpus_per_replica,
            min_replicas=m.replicas_min,
            max_replicas=m.replicas_max,
            slo=m.slo.model_dump(mode="json", by_alias=True, exclude_none=True),
            arch=m.arch,
        )
        for m in placed
    )
    derivable = all(e.arch is not None for e in entries) and all(p.accelerator in ACCELERATORS for p in pools)
    return OptimizerPlan(
        component=_component(stack, "optimizer", OPTIMIZER, stack.images.optimizer),
        port=OPTIMIZER_PORT,
        metrics_url=_optimizer_url(stack),
        models=entries,
        pools=pools,
        gateway_metrics_urls=gateway.metrics_urls if gateway is not None else (),
        derive_missing_profiles=derivable,
        solver=spec.solver,
        interval_s=duration_seconds(spec.interval),
        profiles_config_map=spec.profiles.config_map_ref,
    )


def plan_kv_pool(stack: ResolvedStack) -> KvPoolPlan | None:
    spec = stack.kv_cache
    if not spec.enabled:
        return None
    return KvPoolPlan(
        component=_component(stack, "kv-cache", KV_POOL, stack.images.kv_cache),
        port=KV_POOL_PORT,
        metrics_port=KV_METRICS_PORT,
        replicas=spec.replicas,
        memory_per_replica=spec.memory_per_replica,
        eviction=spec.eviction,
        block_size_tokens=spec.block_size_tokens,
        dns_name=f"{KV_POOL}.{stack.namespace}.svc",
    )


def plan_diagnostics(stack: ResolvedStack, pools: dict[str, PoolPlan]) -> DiagnosticsPlan | None:
    spec = stack.diagnostics
    if not spec.enabled:
        return None
    covered = list(pools.values()) if spec.pools is None else [pools[name] for name in spec.pools]
    return DiagnosticsPlan(
        component=_component(stack, "diagnostics", DIAG, stack.images.diagnostics),
        pools=tuple(covered),
        metrics_port=DIAG_METRICS_PORT,
        interval_s=duration_seconds(spec.interval),
        node_condition=spec.node_condition,
        taint_on_failure=spec.taint_on_failure,
    )


def plan_observability(stack: ResolvedStack) -> ObservabilityPlan | None:
    spec = stack.observability
    if not spec.enabled:
        return None
    return ObservabilityPlan(
        service_monitors=spec.service_monitors,
        prometheus_rules=spec.prometheus_rules,
        scrape_interval=spec.scrape_interval,
        http_metrics=frozenset({GATEWAY, OPTIMIZER}),
        dashboards=spec.dashboards,
    )


def _peer(stack: ResolvedStack, peer: PeerSpec) -> dict[str, Any]:
    """A NetworkPolicy peer: pods (by labels) in one namespace (by its API-server-set name)."""
    namespace = peer.namespace or stack.namespace
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
        "podSelector": {"matchLabels": dict(sorted(peer.pod_selector.items()))} if peer.pod_selector else {},
    }


def plan_network(
    stack: ResolvedStack,
    *,
    gateway: GatewayPlan | None,
    scaler: ScalerPlan | None,
    optimizer: OptimizerPlan | None,
    models: tuple[ModelPlan, ...] = (),
) -> NetworkPlan:
    """Every pod of the stack is denied by default; then engines accept the gateway, the
    proxies, the scaler and the scrapers on their API ports (and, without a gateway, the
    clients); our Envoy accepts the clients; the gateway's ext_proc port accepts the proxies
    and its metrics port the optimizer, scrapers and (scaling from zero) the scaler; the optimizer accepts the scaler and
    scrapers; the KV pool accepts engines; Ray pods accept each other within one RayCluster; the
    engines' KV-event port accepts the gateway when a model's prefix index is kv-events; a
    disaggregated model's prefill pods accept its decode pods on the transfer's port."""
    engines = (("app.kubernetes.io/component", ENGINE), ("app.kubernetes.io/instance", stack.name))
    scrapers = tuple(_peer(stack, p) for p in stack.network.scrapers)
    given = stack.network.clients
    clients = tuple(_peer(stack, p) for p in given) if given is not None else None
    to_engines: list[dict[str, Any]] = []
    if gateway is not None:
        to_engines += [gateway.router.peer, *gateway.proxy_peers]
    else:  # bare engines are the endpoint: the clients call them (default: the stack's namespace)
        to_engines += clients if clients is not None else [_peer(stack, PeerSpec())]
    to_engines += scrapers
    if scaler is not None:
        to_engines.append(scaler.component.peer)
    return NetworkPlan(
        stack_selector=(("app.kubernetes.io/instance", stack.name), ("app.kubernetes.io/part-of", "aibrix")),
        engine_selector=engines,
        scrapers=scrapers,
        to_engines=tuple(to_engines),
        to_envoy=clients or (),
        to_gateway_grpc=gateway.proxy_peers if gateway is not None else (),
        to_gateway_http=(
            *scrapers,
            *((optimizer.component.peer,) if optimizer is not None else ()),
            # The scaler reads held + in-flight requests there to scale from zero.
            *((scaler.component.peer,) if scaler is not None and any(t.demand_urls for t in scaler.targets) else ()),
        ),
        to_optimizer=(*scrapers, *((scaler.component.peer,) if scaler is not None else ())),
        to_kv_pool=({"podSelector": {"matchLabels": dict(engines)}},),
        to_engine_kv_events=(gateway.router.peer,) if gateway is not None and any(
            m.spec.routing.parameters.prefix_cache_aware.index == "kv-events" for m in stack.models) else (),
        pd_links=tuple(link for m in models if m.disaggregation is not None
                       if (link := pd_link(m.name, m.disaggregation)) is not None),
    )
