"""Pass 4, plan: :class:`~compiler.defaults.ResolvedStack` -> :class:`Plan`.

The plan makes every decision renderers need, so renderers only spell objects out: the
models' workloads and engine pods (:mod:`.models`), the stack's own components and who
may reach whom (:mod:`.components`), the features of the target Kubernetes version, and
every user error that only shows once choices combine (:mod:`.checks`), raised here
together with its path so no renderer ever raises a spec error.
"""

from __future__ import annotations

from ..defaults import ResolvedPool, ResolvedStack
from ..errors import Diagnostic, SpecValidationError
from .checks import (
    check_flow_control,
    check_hpa_selectors,
    check_kv_engines,
    check_multi_node,
    check_names,
    check_optimizer,
    check_weights_fit,
)
from .components import (
    duration_seconds,
    plan_diagnostics,
    plan_gateway,
    plan_kv_pool,
    plan_network,
    plan_observability,
    plan_optimizer,
    plan_scale_targets,
    plan_scaler,
)
from .models import plan_models
from .types import (
    AdapterPlan,
    Component,
    DiagnosticsPlan,
    DisaggregationPlan,
    GatewayPlan,
    KubeFeatures,
    KvPoolPlan,
    Labels,
    ModelPlan,
    NetworkPlan,
    ObservabilityPlan,
    OptimizedModel,
    OptimizerPlan,
    OptimizerPool,
    PdLink,
    Plan,
    PoolPlan,
    RolePlan,
    ScalerPlan,
    ScaleTarget,
    WorkloadPlan,
)

__all__ = [
    "AdapterPlan",
    "Component",
    "DiagnosticsPlan",
    "DisaggregationPlan",
    "GatewayPlan",
    "KubeFeatures",
    "KvPoolPlan",
    "Labels",
    "ModelPlan",
    "NetworkPlan",
    "ObservabilityPlan",
    "OptimizedModel",
    "OptimizerPlan",
    "OptimizerPool",
    "PdLink",
    "Plan",
    "PoolPlan",
    "RolePlan",
    "ScaleTarget",
    "ScalerPlan",
    "WorkloadPlan",
    "duration_seconds",
    "kube_features",
    "plan",
]


def kube_features(version: tuple[int, int]) -> KubeFeatures:
    """What the target version turns on by default: native sidecar containers are beta and on
    from 1.29 (GA 1.33); a PDB's unhealthyPodEvictionPolicy is beta and on from 1.27 (GA 1.31);
    ValidatingAdmissionPolicy is GA in 1.30, as are the node-name claims in service-account
    tokens it reads (beta and on by default from 1.30)."""
    return KubeFeatures(
        native_sidecars=version >= (1, 29),
        unhealthy_pod_eviction_policy=version >= (1, 27),
        validating_admission_policy=version >= (1, 30),
    )


def _pool(p: ResolvedPool) -> PoolPlan:
    return PoolPlan(
        name=p.name,
        accelerator=p.accelerator,
        product=p.product,
        resource_name=p.resource_name,
        gpus_per_node=p.gpus_per_node,
        memory_gib=p.memory_gib,
        cost_per_gpu_hour=p.cost_per_gpu_hour,
        node_selector=p.node_selector,
        tolerations=p.tolerations,
        runtime_class=p.runtime_class,
        max_nodes=p.max_nodes,
    )


def kv_events_warnings(models: tuple[ModelPlan, ...]) -> tuple[str, ...]:
    """kv-events with a real engine: its events carry the model tokenizer's ids, the compiled gateway
    tokenizes approximately (it has no tokenizerFile), so prompts will not match the events."""
    return tuple(
        f"warning: model {m.name}: prefixCacheAware.index kv-events fills the gateway's index from vLLM's KV events, "
        "but the compiled gateway tokenizes prompts approximately, so prompts will not match them (only the short-lived "
        "provisional entries route by prefix); give the gateway the model's tokenizer.json (models[].tokenizerFile in "
        "its config) or keep index: decisions (docs/routing.md, Precise mode)"
        for m in models if m.kv_events_port is not None
    )


def plan(stack: ResolvedStack, *, kube_version: tuple[int, int]) -> Plan:
    """Decide workloads, engine pods, components and their wiring; raise every user error found."""
    problems: list[Diagnostic] = [
        *check_multi_node(stack),
        *check_kv_engines(stack),
        *check_optimizer(stack),
        *check_hpa_selectors(stack),
        *check_flow_control(stack),
    ]
    pools = {p.name: _pool(p) for p in stack.pools}
    models = plan_models(stack, pools, problems)
    problems += check_names(models)
    problems += check_weights_fit(stack, models)
    if problems:
        raise SpecValidationError(problems)
    gateway = plan_gateway(stack)
    targets = plan_scale_targets(stack, models)
    scaler = plan_scaler(stack, targets)
    optimizer = plan_optimizer(stack, models, gateway)
    return Plan(
        stack_name=stack.name,
        namespace=stack.namespace,
        create_namespace=stack.create_namespace,
        extra_labels=stack.labels,
        kube_version=kube_version,
        features=kube_features(kube_version),
        pull_policy=stack.images.pull_policy,
        pull_secret=stack.images.pull_secret_ref,
        runtime_image=stack.images.downloader,
        prometheus_url=stack.prometheus_url,
        pools=tuple(pools.values()),
        models=models,
        network=plan_network(stack, gateway=gateway, scaler=scaler, optimizer=optimizer, models=models),
        gateway=gateway,
        scale_targets=targets,
        scaler=scaler,
        optimizer=optimizer,
        kv_pool=plan_kv_pool(stack),
        diagnostics=plan_diagnostics(stack, pools),
        observability=plan_observability(stack),
        warnings=kv_events_warnings(models),
    )
