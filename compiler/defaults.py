"""Pass 3, defaults: InferenceStack -> ResolvedStack (every default decided, in one place).

After this pass no later pass chooses a default: pools carry product, memory, price,
node selector and tolerations (from :mod:`aibrix_spec.catalog` when the pool names an
accelerator); models carry their served name, GPUs per replica, replicas.max and LoRA
limits; absent optional sections become ``enabled: false`` sections; the namespace is
fixed (metadata.namespace, else the ``--namespace`` option, else ``default``).

The result is still an :class:`~aibrix_spec.InferenceStack`, so dumping it and compiling
the dump gives the same output (a golden-test invariant).
"""

from __future__ import annotations

from typing import NewType

from aibrix_spec import (
    DiagnosticsSpec,
    GatewaySpec,
    GpuPool,
    InferenceStack,
    KvCachePoolSpec,
    ModelSpec,
    ObservabilitySpec,
    OptimizerSpec,
    Toleration,
)
from aibrix_spec.catalog import accelerator

from .errors import Diagnostic, SpecReferenceError

__all__ = ["DEFAULT_NAMESPACE", "ResolvedStack", "apply_defaults"]

#: An InferenceStack whose defaults have all been applied by :func:`apply_defaults`.
ResolvedStack = NewType("ResolvedStack", InferenceStack)

DEFAULT_NAMESPACE = "default"
_MAX_DEFAULT_LORAS = 8
_GPU_TAINT = Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


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


def _model(model: ModelSpec) -> ModelSpec:
    gpus = model.parallelism.tensor * model.parallelism.pipeline
    lora = model.lora
    if lora.max_loras is None:
        lora = lora.model_copy(update={"max_loras": max(1, min(len(model.adapters), _MAX_DEFAULT_LORAS))})
    return model.model_copy(
        update={
            "served_model_name": model.served_model_name or model.name,
            "placement": model.placement.model_copy(update={"gpus_per_replica": gpus}),
            "replicas": model.replicas.model_copy(
                update={"max": model.replicas.max if model.replicas.max is not None else model.replicas.min}
            ),
            "lora": lora,
        }
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
    resolved_spec = spec.model_copy(
        update={
            "gpu_pools": [_pool(p) for p in spec.gpu_pools],
            "models": [_model(m) for m in spec.models],
            "gateway": spec.gateway or GatewaySpec(enabled=False),
            "kv_cache": spec.kv_cache or KvCachePoolSpec(enabled=False),
            "optimizer": spec.optimizer or OptimizerSpec(enabled=False),
            "diagnostics": spec.diagnostics or DiagnosticsSpec(enabled=False),
            "observability": spec.observability or ObservabilitySpec(enabled=False),
        }
    )
    metadata = stack.metadata.model_copy(update={"namespace": written or namespace or DEFAULT_NAMESPACE})
    return ResolvedStack(stack.model_copy(update={"metadata": metadata, "spec": resolved_spec}))
