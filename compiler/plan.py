"""Pass 4, plan: ResolvedStack -> :class:`Plan` (what exists and how it is wired).

The plan makes every decision renderers need, so renderers only spell objects out:

- one workload (Deployment) per (model, placement pool); its name is the model's name
  when the model has one pool, else ``<model>-<pool>``;
- a fixed replica count is split over the pools as evenly as possible, the first pools
  taking the remainder: pool k of n gets ``min // n + (1 if k < min % n else 0)``;
  an autoscaled model's workloads carry no count (``replicas: None``) so GitOps never
  fights the autoscaler;
- a replica needing more GPUs than one node of its pool holds is multi-node (KubeRay):
  it spans ``nodes = ceil(tensor x pipeline / gpusPerNode)`` pods of ``gpusPerNode`` GPUs
  each; autoscaling it, or running it on SGLang, is refused with a spec error;
- the engine's command line (:mod:`.engine_args`), image, env, secret and volumes;
- a model with ``kvCache.enabled`` (vLLM) gets the pool's connector flags: ``--block-size``
  (the pool's, so every engine derives equal keys) and ``--kv-transfer-config``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from aibrix_spec import ImagesSpec, InferenceStack, ModelSpec

from .defaults import ResolvedStack
from .engine_args import EngineCommand, engine_command
from .errors import CompilerBug, Diagnostic, SpecValidationError

__all__ = ["ModelPlan", "Plan", "PoolPlan", "WorkloadPlan", "plan"]


@dataclass(frozen=True)
class PoolPlan:
    """A GPU pool with every default resolved."""

    name: str
    product: str
    resource_name: str
    gpus_per_node: int
    memory_gib: float
    cost_per_gpu_hour: float
    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[dict[str, str], ...]
    runtime_class: str | None = None  #: RuntimeClass of GPU pods, when the pool names one


@dataclass(frozen=True)
class WorkloadPlan:
    """One Deployment (or RayCluster) of a model on one pool."""

    name: str
    pool: PoolPlan
    replicas: int | None  #: None = owned by an autoscaler
    gpus_per_replica: int
    multi_node: bool
    nodes: int = 1  #: pods (nodes) one replica spans: ceil(gpus_per_replica / gpus_per_node)


@dataclass(frozen=True)
class ModelPlan:
    """Everything about one model that renderers spell out."""

    index: int  #: position under spec.models (for error paths)
    name: str
    served_name: str
    engine: str
    image: str
    port: int
    command: EngineCommand
    env: tuple[tuple[str, str], ...]
    secret_ref: str | None
    pvc_claim: str | None  #: weights on a PersistentVolumeClaim (pvc:// sources)
    gpus_per_replica: int
    replicas_min: int
    replicas_max: int
    autoscaled: bool
    workloads: tuple[WorkloadPlan, ...]


@dataclass(frozen=True)
class Plan:
    """The whole stack, decided."""

    stack_name: str
    namespace: str
    create_namespace: bool
    extra_labels: tuple[tuple[str, str], ...]
    kube_version: tuple[int, int]
    images: ImagesSpec
    pools: tuple[PoolPlan, ...]
    models: tuple[ModelPlan, ...]
    stack: InferenceStack  #: the resolved spec, for renderers of the optional sections


T = TypeVar("T")


def _need(value: T | None, what: str) -> T:
    if value is None:
        raise CompilerBug("plan", f"{what} is unset after the defaults pass")
    return value


def _pool(stack: ResolvedStack) -> dict[str, PoolPlan]:
    out = {}
    for p in stack.spec.gpu_pools:
        out[p.name] = PoolPlan(
            name=p.name,
            product=_need(p.product, f"gpuPools {p.name} product"),
            resource_name=p.resource_name,
            gpus_per_node=p.gpus_per_node,
            memory_gib=_need(p.memory_gib, f"gpuPools {p.name} memoryGib"),
            cost_per_gpu_hour=_need(p.cost_per_gpu_hour, f"gpuPools {p.name} costPerGpuHour"),
            node_selector=tuple(sorted((p.node_selector or {}).items())),
            tolerations=tuple(t.model_dump(by_alias=True, exclude_none=True) for t in (p.tolerations or ())),
            runtime_class=p.runtime_class_name,
        )
    return out


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _refuse_unsupported_multi_node(stack: ResolvedStack) -> None:
    """Multi-node replicas run vLLM on KubeRay with a fixed count; say so for anything else."""
    per_node = {p.name: p.gpus_per_node for p in stack.spec.gpu_pools}
    problems = []
    for i, m in enumerate(stack.spec.models):
        gpus = m.parallelism.tensor * m.parallelism.pipeline
        too_big = [p for p in m.placement.pools if gpus > per_node[p]]
        if not too_big:
            continue
        pool = too_big[0]
        where = f'a replica of {gpus} GPUs spans {-(-gpus // per_node[pool])} nodes of pool "{pool}" ({per_node[pool]} GPUs each)'
        if m.autoscaling.policy != "none":
            problems.append(
                Diagnostic(
                    ("spec", "models", i, "autoscaling", "policy"),
                    "autoscaling of multi-node models is not supported yet; "
                    "set autoscaling.policy: none or fit the model on one node",
                    expected=f"autoscaling.policy: none, since {where}",
                    hint="a fixed replicas.min compiles to that many RayClusters",
                )
            )
        if m.engine.type != "vllm":
            problems.append(
                Diagnostic(
                    ("spec", "models", i, "engine", "type"),
                    f"multi-node models run on vLLM's Ray executor; engine {m.engine.type} is not supported there",
                    expected=f"engine.type: vllm, since {where}",
                    hint="use vllm, or lower parallelism.pipeline so a replica fits on one node",
                )
            )
    if problems:
        raise SpecValidationError(problems)


#: The KV-cache pool's headless Service and block-protocol port (rendered by render/kvcache.py).
KV_POOL_SERVICE = "aibrix-kv-cache"
KV_POOL_PORT = 9600
#: Class and module of the pool's vLLM connector (runtime_components/kv/vllm_connector.py).
KV_CONNECTOR = ("AIBrixKVConnector", "runtime_components.kv.vllm_connector")


def _kv_connector_args(stack: ResolvedStack, m: ModelSpec, *, namespace: str) -> dict[str, str | int]:
    """vLLM flags that load the pool's connector (``models[].kvCache.enabled``), else none.

    Members come from the pool's headless Service (re-resolved by the client), and every
    engine sharing the pool uses the pool's block size, so equal prefixes give equal keys.
    """
    pool = stack.spec.kv_cache
    if not m.kv_cache.enabled or pool is None or not pool.enabled or m.engine.type != "vllm":
        return {}
    transfer = {
        "kv_connector": KV_CONNECTOR[0],
        "kv_connector_module_path": KV_CONNECTOR[1],
        "kv_role": "kv_both",
        "kv_connector_extra_config": {"dns_name": f"{KV_POOL_SERVICE}.{namespace}.svc", "port": KV_POOL_PORT},
    }
    return {"blockSize": pool.block_size_tokens, "kvTransferConfig": json.dumps(transfer, sort_keys=True, separators=(",", ":"))}


def plan(stack: ResolvedStack, *, kube_version: tuple[int, int]) -> Plan:
    """Decide workloads, replica counts and engine command lines for every model."""
    _refuse_unsupported_multi_node(stack)
    pools = _pool(stack)
    images = stack.spec.images
    models = []
    for index, m in enumerate(stack.spec.models):
        gpus = _need(m.placement.gpus_per_replica, "gpusPerReplica")
        replicas_max = _need(m.replicas.max, "replicas.max")
        autoscaled = m.autoscaling.policy != "none"
        counts = _split(m.replicas.min, len(m.placement.pools))
        single = len(m.placement.pools) == 1
        workloads = tuple(
            WorkloadPlan(
                name=m.name if single else f"{m.name}-{pool_name}",
                pool=pools[pool_name],
                replicas=None if autoscaled else counts[k],
                gpus_per_replica=gpus,
                multi_node=gpus > pools[pool_name].gpus_per_node,
                nodes=-(-gpus // pools[pool_name].gpus_per_node),
            )
            for k, pool_name in enumerate(m.placement.pools)
        )
        lora = (_need(m.lora.max_loras, "lora.maxLoras"), int(m.lora.max_rank)) if m.adapters else None
        served = _need(m.served_model_name, "servedModelName")
        command = engine_command(
            engine=m.engine.type,
            uri=m.source.uri,
            served_name=served,
            port=m.engine.port,
            tensor=m.parallelism.tensor,
            pipeline=m.parallelism.pipeline,
            max_model_len=m.engine.max_model_len,
            prefix_caching=m.engine.prefix_caching,
            gpu_memory_utilization=m.engine.gpu_memory_utilization,
            dtype=m.engine.dtype,
            lora=lora,
            extra={**m.engine.args, **_kv_connector_args(stack, m, namespace=_need(stack.metadata.namespace, "metadata.namespace"))},
        )
        pvc = m.source.uri.removeprefix("pvc://").partition("/")[0] if m.source.uri.startswith("pvc://") else None
        models.append(
            ModelPlan(
                index=index,
                name=m.name,
                served_name=served,
                engine=m.engine.type,
                image=images.vllm if m.engine.type == "vllm" else images.sglang,
                port=m.engine.port,
                command=command,
                env=tuple(sorted(m.engine.env.items())),
                secret_ref=m.source.secret_ref,
                pvc_claim=pvc,
                gpus_per_replica=gpus,
                replicas_min=m.replicas.min,
                replicas_max=replicas_max,
                autoscaled=autoscaled,
                workloads=workloads,
            )
        )
    return Plan(
        stack_name=stack.metadata.name,
        namespace=_need(stack.metadata.namespace, "metadata.namespace"),
        create_namespace=stack.spec.create_namespace,
        extra_labels=tuple(sorted(stack.metadata.labels.items())),
        kube_version=kube_version,
        images=images,
        pools=tuple(pools.values()),
        models=tuple(models),
        stack=stack,
    )
