"""Pass 3, defaults: InferenceStack -> :class:`ResolvedStack` (every default decided, in one place).

After this pass no later pass chooses a default. The result is a type of its own with no
Optional left where a later pass reads a value: pools carry product, memory, price, node
selector and tolerations (from :mod:`aibrix_spec.catalog` when the pool names an
accelerator); models carry their served name, GPUs per replica, replicas.max and LoRA
limits; every optional section is present (absent ones as ``enabled: false``); the
namespace is fixed (metadata.namespace, else the ``--namespace`` option, else ``default``).

``ResolvedStack.filled`` is the input with those defaults written in: dumping it and
compiling the dump gives the same output (a golden-test invariant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from aibrix_spec import (
    DiagnosticsSpec,
    GatewaySpec,
    GpuPool,
    ImagesSpec,
    InferenceStack,
    KvCachePoolSpec,
    ModelCacheSpec,
    ModelSpec,
    NetworkSpec,
    ObservabilitySpec,
    OptimizerSpec,
    PdRoleSpec,
    Toleration,
)
from aibrix_spec.catalog import accelerator
from aibrix_spec.models import AutoscalingSpec, DisaggregationSpec, ParallelismSpec, PlacementSpec, ReplicasSpec
from aibrix_spec.traffic import RouteSpec

from .errors import CompilerBug, Diagnostic, SpecReferenceError

__all__ = [
    "DEFAULT_NAMESPACE",
    "PD_DECODE_ROUTING",
    "ResolvedModel",
    "ResolvedPool",
    "ResolvedRole",
    "ResolvedStack",
    "apply_defaults",
]

DEFAULT_NAMESPACE = "default"
#: A disaggregated model's decode pods are KV-bound (they hold every running request's
#: cache), so the gateway balances them on load and KV-cache usage unless routing says otherwise.
PD_DECODE_ROUTING = "least-request,least-kv-cache"
_MAX_DEFAULT_LORAS = 8
T = TypeVar("T")
_GPU_TAINT = Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


@dataclass(frozen=True)
class ResolvedPool:
    """A GPU pool with every default resolved."""

    name: str
    accelerator: str | None  #: the catalogue key the pool named, if any
    product: str
    resource_name: str
    gpus_per_node: int
    memory_gib: float
    cost_per_gpu_hour: float
    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[tuple[tuple[str, str], ...], ...]  #: each toleration as (field, value) pairs
    runtime_class: str | None  #: RuntimeClass of GPU pods, when the pool names one
    max_nodes: int | None


@dataclass(frozen=True)
class ResolvedRole:
    """One role of a disaggregated model, every field the model's own unless the role set it."""

    role: str  #: prefill or decode
    gpus_per_replica: int
    replicas_min: int
    replicas_max: int
    parallelism: ParallelismSpec
    pools: tuple[str, ...]
    autoscaling: AutoscalingSpec


@dataclass(frozen=True)
class ResolvedModel:
    """A model with its derived numbers decided; ``spec`` holds the rest of its (defaulted) config."""

    index: int  #: position under spec.models (for error paths)
    name: str
    served_name: str
    gpus_per_replica: int
    replicas_min: int
    replicas_max: int
    max_loras: int
    spec: ModelSpec
    roles: tuple[ResolvedRole, ...] = ()  #: (prefill, decode) when disaggregated, else empty

    @property
    def disaggregation(self) -> DisaggregationSpec | None:
        return self.spec.disaggregation


@dataclass(frozen=True)
class ResolvedStack:
    """The whole stack with every default applied; the input type of :func:`compiler.plan.plan`."""

    name: str
    namespace: str
    create_namespace: bool
    labels: tuple[tuple[str, str], ...]
    images: ImagesSpec
    prometheus_url: str
    pools: tuple[ResolvedPool, ...]
    models: tuple[ResolvedModel, ...]
    gateway: GatewaySpec
    kv_cache: KvCachePoolSpec
    optimizer: OptimizerSpec
    diagnostics: DiagnosticsSpec
    observability: ObservabilitySpec
    network: NetworkSpec
    model_cache: ModelCacheSpec | None  #: None = downloads land in a pod-local emptyDir
    routes: tuple[RouteSpec, ...]  #: weighted traffic splits (targets are stack model names)
    filled: InferenceStack  #: the input with every default written in (round-trip invariant)


def _pool(pool: GpuPool) -> GpuPool:
    update: dict[str, object] = {}
    if pool.accelerator is not None:
        entry = accelerator(pool.accelerator)
        if pool.product is None:
            update["product"] = entry.product
        if pool.memory_gib is None:
            update["memory_gib"] = entry.memory_gib
        if pool.cost_per_gpu_hour is None:
            update["cost_per_gpu_hour"] = entry.price_per_hour
    product = update.get("product", pool.product)
    if pool.node_selector is None:
        update["node_selector"] = {"nvidia.com/gpu.product": product}
    if pool.tolerations is None:
        update["tolerations"] = [_GPU_TAINT]
    return pool.model_copy(update=update)


def _replicas(replicas: ReplicasSpec) -> ReplicasSpec:
    return replicas.model_copy(update={"max": replicas.max if replicas.max is not None else replicas.min})


def _placement(placement: PlacementSpec, parallelism: ParallelismSpec) -> PlacementSpec:
    return placement.model_copy(update={"gpus_per_replica": parallelism.tensor * parallelism.pipeline})


def _role(role: PdRoleSpec, model: ModelSpec) -> PdRoleSpec:
    """A role with the model's own settings written in where it set none; a role that sets
    parallelism but no placement takes the model's pools with its own GPUs per replica."""
    parallelism = role.parallelism or model.parallelism
    return role.model_copy(
        update={
            "replicas": _replicas(role.replicas or model.replicas),
            "parallelism": parallelism,
            "placement": _placement(role.placement or model.placement, parallelism),
            "autoscaling": role.autoscaling or model.autoscaling,
        }
    )


def _disaggregation(model: ModelSpec) -> dict[str, object]:
    """Both roles filled in, and the decode pods' routing: the user's policy, else
    :data:`PD_DECODE_ROUTING` (written in, so the filled stack compiles the same)."""
    pd = model.disaggregation
    if pd is None:
        return {}
    routing = model.routing
    if "policy" not in routing.model_fields_set:
        routing = routing.model_copy(update={"policy": PD_DECODE_ROUTING})
        routing.model_fields_set.add("policy")
    return {
        "disaggregation": pd.model_copy(update={"prefill": _role(pd.prefill, model), "decode": _role(pd.decode, model)}),
        "routing": routing,
    }


def _model(model: ModelSpec) -> ModelSpec:
    lora = model.lora
    if lora.max_loras is None:
        lora = lora.model_copy(update={"max_loras": max(1, min(len(model.adapters), _MAX_DEFAULT_LORAS))})
    return model.model_copy(
        update={
            "served_model_name": model.served_model_name or model.name,
            "placement": _placement(model.placement, model.parallelism),
            "replicas": _replicas(model.replicas),
            "lora": lora,
            **_disaggregation(model),
        }
    )


def _need(value: T | None, what: str) -> T:
    if value is None:
        raise CompilerBug("defaults", f"{what} is unset after defaulting")
    return value


def _resolved_pool(p: GpuPool) -> ResolvedPool:
    return ResolvedPool(
        name=p.name,
        accelerator=p.accelerator,
        product=_need(p.product, f"gpuPools {p.name} product"),
        resource_name=p.resource_name,
        gpus_per_node=p.gpus_per_node,
        memory_gib=_need(p.memory_gib, f"gpuPools {p.name} memoryGib"),
        cost_per_gpu_hour=_need(p.cost_per_gpu_hour, f"gpuPools {p.name} costPerGpuHour"),
        node_selector=tuple(sorted((p.node_selector or {}).items())),
        tolerations=tuple(
            tuple((k, str(v)) for k, v in t.model_dump(by_alias=True, exclude_none=True).items())
            for t in (p.tolerations or ())
        ),
        runtime_class=p.runtime_class_name,
        max_nodes=p.max_nodes,
    )


def _resolved_role(name: str, role: PdRoleSpec) -> ResolvedRole:
    replicas = _need(role.replicas, f"{name}.replicas")
    placement = _need(role.placement, f"{name}.placement")
    return ResolvedRole(
        role=name,
        gpus_per_replica=_need(placement.gpus_per_replica, f"{name}.placement.gpusPerReplica"),
        replicas_min=replicas.min,
        replicas_max=_need(replicas.max, f"{name}.replicas.max"),
        parallelism=_need(role.parallelism, f"{name}.parallelism"),
        pools=tuple(placement.pools),
        autoscaling=_need(role.autoscaling, f"{name}.autoscaling"),
    )


def _resolved_model(index: int, m: ModelSpec) -> ResolvedModel:
    pd = m.disaggregation
    return ResolvedModel(
        index=index,
        name=m.name,
        served_name=_need(m.served_model_name, "servedModelName"),
        gpus_per_replica=_need(m.placement.gpus_per_replica, "gpusPerReplica"),
        replicas_min=m.replicas.min,
        replicas_max=_need(m.replicas.max, "replicas.max"),
        max_loras=_need(m.lora.max_loras, "lora.maxLoras"),
        spec=m,
        roles=(_resolved_role("prefill", pd.prefill), _resolved_role("decode", pd.decode)) if pd is not None else (),
    )


def apply_defaults(stack: InferenceStack, *, namespace: str | None = None) -> ResolvedStack:
    """Fill every default; ``namespace`` is the --namespace option (ArgoCD's app namespace)."""
    written = stack.metadata.namespace
    if written is not None and namespace is not None and written != namespace:
        raise SpecReferenceError(
            [
                Diagnostic(
                    ("metadata", "namespace"),
                    f'the stack says namespace "{written}" but --namespace says "{namespace}"',
                    expected="the same namespace in both places",
                    hint="remove metadata.namespace to let the option (ArgoCD's destination) decide",
                )
            ]
        )
    spec = stack.spec
    gateway = spec.gateway or GatewaySpec(enabled=False)
    kv_cache = spec.kv_cache or KvCachePoolSpec(enabled=False)
    optimizer = spec.optimizer or OptimizerSpec(enabled=False)
    diagnostics = spec.diagnostics or DiagnosticsSpec(enabled=False)
    observability = spec.observability or ObservabilitySpec(enabled=False)
    pools = [_pool(p) for p in spec.gpu_pools]
    models = [_model(m) for m in spec.models]
    resolved_spec = spec.model_copy(
        update={
            "gpu_pools": pools,
            "models": models,
            "gateway": gateway,
            "kv_cache": kv_cache,
            "optimizer": optimizer,
            "diagnostics": diagnostics,
            "observability": observability,
        }
    )
    final_namespace = written or namespace or DEFAULT_NAMESPACE
    metadata = stack.metadata.model_copy(update={"namespace": final_namespace})
    return ResolvedStack(
        name=stack.metadata.name,
        namespace=final_namespace,
        create_namespace=spec.create_namespace,
        labels=tuple(sorted(stack.metadata.labels.items())),
        images=spec.images,
        prometheus_url=spec.prometheus_url,
        pools=tuple(_resolved_pool(p) for p in pools),
        models=tuple(_resolved_model(i, m) for i, m in enumerate(models)),
        gateway=gateway,
        kv_cache=kv_cache,
        optimizer=optimizer,
        diagnostics=diagnostics,
        observability=observability,
        network=spec.network,
        model_cache=spec.model_cache,
        routes=tuple(spec.routes),
        filled=stack.model_copy(update={"metadata": metadata, "spec": resolved_spec}),
    )
