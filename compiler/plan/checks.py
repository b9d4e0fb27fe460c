"""User errors the plan pass finds: choices the spec allows alone but the plan cannot honour.

Each check returns diagnostics (path, message, expected, hint); :func:`compiler.plan.plan`
runs every check and raises them together, so renderers never raise a spec error.
"""

from __future__ import annotations

import re

from aibrix_spec import AUTOSCALING_METRICS, AutoscalingSpec
from aibrix_spec.catalog import ACCELERATORS, MODEL_ARCHS

from ..defaults import ResolvedModel, ResolvedStack
from ..errors import Diagnostic
from .durations import duration_seconds
from .models import model_arch_of
from .types import ModelPlan

__all__ = [
    "MAX_RAY_CLUSTER_NAME",
    "RAY_HEAD_SERVICE_SUFFIX",
    "check_flow_control",
    "check_hpa_selectors",
    "check_multi_node",
    "check_names",
    "check_optimizer",
    "check_weights_fit",
]

#: KubeRay names a cluster's head Service <cluster>-head-svc, which must be a DNS label (<= 63).
RAY_HEAD_SERVICE_SUFFIX = "-head-svc"
MAX_RAY_CLUSTER_NAME = 63 - len(RAY_HEAD_SERVICE_SUFFIX)


def check_multi_node(stack: ResolvedStack) -> list[Diagnostic]:
    """Multi-node replicas run vLLM on KubeRay with a fixed count; say so for anything else."""
    per_node = {p.name: p.gpus_per_node for p in stack.pools}
    problems = []
    for m in stack.models:
        if m.roles:
            continue  # multi-node roles are refused by the cross-reference pass
        too_big = [p for p in m.spec.placement.pools if m.gpus_per_replica > per_node[p]]
        if not too_big:
            continue
        pool = too_big[0]
        gpus = m.gpus_per_replica
        where = f'a replica of {gpus} GPUs spans {-(-gpus // per_node[pool])} nodes of pool "{pool}" ({per_node[pool]} GPUs each)'
        if m.spec.autoscaling.policy != "none":
            problems.append(
                Diagnostic(
                    ("spec", "models", m.index, "autoscaling", "policy"),
                    "autoscaling of multi-node models is not supported yet; "
                    "set autoscaling.policy: none or fit the model on one node",
                    expected=f"autoscaling.policy: none, since {where}",
                    hint="a fixed replicas.min compiles to that many RayClusters",
                )
            )
        if m.spec.engine.type != "vllm":
            problems.append(
                Diagnostic(
                    ("spec", "models", m.index, "engine", "type"),
                    f"multi-node models run on vLLM's Ray executor; engine {m.spec.engine.type} is not supported there",
                    expected=f"engine.type: vllm, since {where}",
                    hint="use vllm, or lower parallelism.pipeline so a replica fits on one node",
                )
            )
    return problems


_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def check_hpa_selectors(stack: ResolvedStack) -> list[Diagnostic]:
    """A bare HPA selects its Pods metric by the label ``model_name: <servedModelName>``, and a
    label value cannot hold every OpenAI name (``meta-llama/Llama-3-8B`` has a ``/``)."""
    problems = []
    for m in stack.models:
        bare = [spec for spec in _autoscalings(m) if spec.policy == "hpa" and not spec.use_keda
                and AUTOSCALING_METRICS[spec.metric].source == "engine"]
        if not bare:
            continue
        if not _LABEL_VALUE.match(m.served_name):
            field = "servedModelName" if m.spec.served_model_name else "name"
            problems.append(
                Diagnostic(
                    ("spec", "models", m.index, *_autoscaling_path(m, bare[0]), "policy"),
                    f'a bare HPA selects the metric by the label model_name="{m.served_name}", '
                    f"which is not a valid label value (from {field})",
                    expected="at most 63 letters, digits, -, _ and ., alphanumeric at both ends",
                    hint="set autoscaling.useKeda: true (a PromQL query takes any name), or use policy kpa or apa",
                )
            )
    return problems


def _autoscalings(m: ResolvedModel) -> list[AutoscalingSpec]:
    """The autoscaling settings that take effect: each role's for a disaggregated model."""
    return [r.autoscaling for r in m.roles] if m.roles else [m.spec.autoscaling]


def _autoscaling_path(m: ResolvedModel, spec: AutoscalingSpec) -> tuple[str, ...]:
    """Where an effective autoscaling setting was written (a role's own, else the model's)."""
    pd = m.spec.disaggregation
    if pd is not None:
        for name, role in (("prefill", pd.prefill), ("decode", pd.decode)):
            if role.autoscaling is spec and spec is not m.spec.autoscaling:
                return ("disaggregation", name, "autoscaling")
    return ("autoscaling",)


def check_kv_engines(stack: ResolvedStack) -> list[Diagnostic]:
    """The pool's connector is a vLLM connector."""
    if not stack.kv_cache.enabled:
        return []
    return [
        Diagnostic(
            ("spec", "models", m.index, "kvCache", "enabled"),
            f"the KV-cache pool's connector is a vLLM connector; model {m.name} runs {m.spec.engine.type}",
            expected="kvCache.enabled: false, or engine.type: vllm",
            hint="SGLang keeps its own radix cache; turn the pool off for this model",
        )
        for m in stack.models
        if m.spec.engine.type != "vllm" and m.spec.kv_cache.enabled
    ]


def check_names(models: tuple[ModelPlan, ...]) -> list[Diagnostic]:
    """Every RayCluster's head Service name must be a DNS label."""
    problems = []
    for model in models:
        longest = max((n for w in model.workloads for n in w.ray_clusters), key=len, default="")
        if len(longest) > MAX_RAY_CLUSTER_NAME:
            problems.append(
                Diagnostic(
                    ("spec", "models", model.index, "name"),
                    f'RayCluster "{longest}" is too long: '
                    f'its head Service "{longest}{RAY_HEAD_SERVICE_SUFFIX}" exceeds 63 characters',
                    expected=f"RayCluster names of at most {MAX_RAY_CLUSTER_NAME} characters (<workload>-<replica>)",
                    hint="shorten the model name (or the pool name, for a model on several pools)",
                )
            )
    return problems


def optimized_models(stack: ResolvedStack) -> list[int]:
    """Indexes of the models autoscaled on the optimizer's gauge."""
    return [
        m.index
        for m in stack.models
        if not m.roles  # roles on the optimizer's gauge are refused by the cross-reference pass
        and m.spec.autoscaling.policy != "none"
        and AUTOSCALING_METRICS[m.spec.autoscaling.metric].source == "optimizer"
    ]


def check_optimizer(stack: ResolvedStack) -> list[Diagnostic]:
    """The optimizer needs models to place, the gateway's histogram, SLOs and profiles."""
    if not stack.optimizer.enabled:
        return []
    placed = [stack.models[i] for i in optimized_models(stack)]
    problems = []
    if not placed:
        problems.append(
            Diagnostic(
                ("spec", "optimizer"),
                "the optimizer has no model to place",
                expected="a model with autoscaling.metric: optimizer_desired_replicas",
                hint="set that metric (with policy hpa, kpa or apa) on the models it should place, or remove spec.optimizer",
            )
        )
    if not stack.gateway.enabled:
        problems.append(
            Diagnostic(
                ("spec", "optimizer"),
                "the optimizer reads its workload from the gateway's token histogram, and the gateway is off",
                expected="spec.gateway present and enabled",
                hint="add `gateway: {}` under spec",
            )
        )
    derive = stack.optimizer.profiles.config_map_ref is None
    for m in placed:
        if m.spec.slo.ttft_p99_ms is None and m.spec.slo.tpot_p99_ms is None:
            problems.append(
                Diagnostic(
                    ("spec", "models", m.index, "slo"),
                    f"model {m.name} is placed by the optimizer but has no SLO",
                    expected="slo.ttftP99Ms and/or slo.tpotP99Ms",
                    hint="profiles are the highest rates that meet the SLO, so the optimizer needs one",
                )
            )
        if derive and model_arch_of(m) is None:
            problems.append(
                Diagnostic(
                    ("spec", "models", m.index, "name"),
                    f"no profiles for model {m.name}: optimizer.profiles.configMapRef is empty and neither the model's "
                    "arch, its name nor its source names an architecture the catalogue knows",
                    expected="models[].arch from the catalogue: " + ", ".join(sorted(MODEL_ARCHS)),
                    hint="set arch (or measure profiles with aibrix-optimize profile into a ConfigMap and set "
                    "optimizer.profiles.configMapRef)",
                )
            )
    return problems


#: The gateway's own bound on gateway.flowControl.queueTimeout (FlowControlConfig.queue_timeout_s).
MAX_QUEUE_TIMEOUT_S = 3600.0


def check_flow_control(stack: ResolvedStack) -> list[Diagnostic]:
    """queueTimeout within the gateway's bounds; replicas.min 0 only with the gateway's flow control.

    A model at zero replicas has no engine to report demand: only the gateway sees it, so
    scale from zero needs flow control (requests are held and exported as demand); which
    autoscalers may go to zero (kpa, apa, hpa through KEDA) is checked in ``crossref``."""
    problems = []
    flow = stack.gateway.flow_control
    timeout = duration_seconds(flow.queue_timeout)
    if not 0 < timeout <= MAX_QUEUE_TIMEOUT_S:
        problems.append(Diagnostic(
            ("spec", "gateway", "flowControl", "queueTimeout"),
            f"queueTimeout {flow.queue_timeout} is outside the range the gateway accepts",
            expected="a duration above 0 and at most 1h, e.g. 30s",
            hint="clients usually give up within a minute or two; hold requests no longer than they wait",
        ))
    units = [
        (m, ("spec", "models", m.index), m.replicas_min, m.spec.autoscaling) for m in stack.models if not m.roles
    ] + [
        (m, ("spec", "models", m.index, "disaggregation", r.role), r.replicas_min, r.autoscaling)
        for m in stack.models for r in m.roles
    ]
    for _m, base, replicas_min, autoscaling in units:
        if replicas_min != 0:
            continue
        where = (*base, "replicas", "min")
        if autoscaling.policy == "none" or (autoscaling.policy == "hpa" and not autoscaling.use_keda):
            continue  # a fixed count of 0 parks the model; a bare HPA is refused by the cross-reference pass
        if not (stack.gateway.enabled and flow.enabled):
            problems.append(Diagnostic(
                where,
                "replicas.min 0 needs the gateway's flow control: at zero replicas only the gateway sees demand",
                expected="gateway.enabled: true and gateway.flowControl.enabled: true",
                hint="requests are then held while the first replica starts, instead of answered 503",
            ))
    return problems


def check_weights_fit(stack: ResolvedStack, models: tuple[ModelPlan, ...]) -> list[Diagnostic]:
    """A replica whose weights alone exceed its GPUs' usable memory can never start: say so now,
    not as a crash loop. Only where the catalogue knows both the architecture and the GPU."""
    problems = []
    for plan in models:
        arch = MODEL_ARCHS.get(plan.arch or "")
        if arch is None:
            continue
        spec = stack.models[plan.index].spec
        utilization = spec.engine.gpu_memory_utilization
        for workload in plan.workloads:
            gpu = ACCELERATORS.get(workload.pool.accelerator or "")
            if gpu is None:
                continue
            usable = workload.gpus_per_replica * gpu.memory_gib * 2**30 * utilization
            if arch.weight_bytes < usable:
                continue
            base: tuple[str | int, ...] = ("spec", "models", plan.index)
            if workload.role is not None:
                base += ("disaggregation", workload.role)
            need = -(-int(arch.weight_bytes) // int(gpu.memory_gib * 2**30 * utilization))
            problems.append(Diagnostic(
                (*base, "parallelism", "tensor"),
                f"{arch.name} ({arch.weight_bytes / 1e9:.0f} GB of weights) does not fit on a replica of "
                f"{workload.gpus_per_replica} x {gpu.name} ({gpu.memory_gib:g} GiB each at gpuMemoryUtilization "
                f"{utilization:g}) in pool \"{workload.pool.name}\"",
                expected=f"at least {need} GPUs per replica on {gpu.name}, plus room for the KV cache",
                hint="raise parallelism.tensor (or pipeline), or place the model on a pool with larger GPUs",
            ))
    return problems
