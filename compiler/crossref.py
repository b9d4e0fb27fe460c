"""Cross-reference rules of the validate pass (DESIGN.md section 3).

Each rule is a function ``InferenceStack -> Iterator[Diagnostic]`` listed once in
:data:`RULES`; :func:`check_references` runs them all and returns every problem.
Paths use the YAML spelling so the pipeline can point at the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from aibrix_spec import (
    AUTOSCALING_METRICS,
    AutoscalingSpec,
    GpuPool,
    InferenceStack,
    ModelSpec,
    ParallelismSpec,
    PdRoleSpec,
    PlacementSpec,
    ReplicasSpec,
    credential_like_name,
)
from aibrix_spec.catalog import MODEL_ARCHS

from .engine_args import PD_TRANSFERS, derived_args
from .errors import Diagnostic, did_you_mean

__all__ = ["RULES", "check_references"]

Rule = Callable[[InferenceStack], Iterator[Diagnostic]]

_ARG_KEY = re.compile(r"^[a-z][a-zA-Z0-9]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"  # optional DNS-subdomain prefix
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _unique(names: list[tuple[tuple[str | int, ...], str]], what: str) -> Iterator[Diagnostic]:
    first: dict[str, tuple[str | int, ...]] = {}
    for path, name in names:
        if name in first:
            where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in first[name]).replace(".[", "[")
            yield Diagnostic(path, f'duplicate {what} "{name}" (also at {where})', expected=f"unique {what}s")
        else:
            first[name] = path


def unique_names(stack: InferenceStack) -> Iterator[Diagnostic]:
    yield from _unique([(("spec", "gpuPools", i, "name"), p.name) for i, p in enumerate(stack.spec.gpu_pools)], "pool name")
    model_dupes = list(_unique([(("spec", "models", i, "name"), m.name) for i, m in enumerate(stack.spec.models)], "model name"))
    yield from model_dupes
    reported = {d.path for d in model_dupes}
    served: list[tuple[tuple[str | int, ...], str]] = []
    for i, m in enumerate(stack.spec.models):
        field = "servedModelName" if m.served_model_name else "name"
        served.append((("spec", "models", i, field), m.served_model_name or m.name))
        for j, a in enumerate(m.adapters):
            served.append((("spec", "models", i, "adapters", j, "name"), a.name))
    yield from (d for d in _unique(served, "OpenAI model name") if d.path not in reported)


def pool_fields(stack: InferenceStack) -> Iterator[Diagnostic]:
    for i, pool in enumerate(stack.spec.gpu_pools):
        if pool.accelerator is None:
            missing = [
                alias
                for alias, value in (
                    ("product", pool.product),
                    ("memoryGib", pool.memory_gib),
                    ("costPerGpuHour", pool.cost_per_gpu_hour),
                )
                if value is None
            ]
            if missing:
                yield Diagnostic(
                    ("spec", "gpuPools", i, "name"),
                    f'pool "{pool.name}" names no accelerator, so it needs {", ".join(missing)}',
                    expected="accelerator (a catalogue entry) or product, memoryGib and costPerGpuHour",
                    hint="e.g. accelerator: nvidia-l20",
                )


def _placement_problems(
    placement_path: tuple[str | int, ...],
    parallelism_path: tuple[str | int, ...],
    placement: PlacementSpec,
    parallelism: ParallelismSpec,
    pools: dict[str, GpuPool],
) -> Iterator[Diagnostic]:
    seen: set[str] = set()
    for j, name in enumerate(placement.pools):
        path = placement_path + ("pools", j)
        if name in seen:
            yield Diagnostic(path, f'pool "{name}" is listed twice', expected="each pool once")
        seen.add(name)
        if name not in pools:
            yield Diagnostic(
                path,
                f'unknown pool "{name}"',
                expected="a name under gpuPools: " + ", ".join(pools),
                hint=did_you_mean(name, pools),
            )
            continue
        pool = pools[name]
        if parallelism.tensor > pool.gpus_per_node:
            yield Diagnostic(
                parallelism_path + ("tensor",),
                f'tensor parallel size {parallelism.tensor} does not fit on one node of pool "{name}" '
                f"({pool.gpus_per_node} GPUs per node)",
                expected=f"tensor <= {pool.gpus_per_node}; spread further with parallelism.pipeline",
            )
    gpus = parallelism.tensor * parallelism.pipeline
    if placement.gpus_per_replica is not None and placement.gpus_per_replica != gpus:
        yield Diagnostic(
            placement_path + ("gpusPerReplica",),
            f"gpusPerReplica is {placement.gpus_per_replica} but parallelism needs "
            f"{parallelism.tensor} x {parallelism.pipeline} = {gpus}",
            expected=f"gpusPerReplica: {gpus}, or leave it out",
        )


def _roles(m: ModelSpec, base: tuple[str | int, ...]) -> Iterator[tuple[str, PdRoleSpec, tuple[str | int, ...]]]:
    """A disaggregated model's roles with their paths (nothing for other models)."""
    if m.disaggregation is not None:
        yield "prefill", m.disaggregation.prefill, base + ("disaggregation", "prefill")
        yield "decode", m.disaggregation.decode, base + ("disaggregation", "decode")


def _role_field(
    role: PdRoleSpec, role_path: tuple[str | int, ...], model_path: tuple[str | int, ...], field: str
) -> tuple[str | int, ...]:
    """Where a role's effective setting was written: the role's own key, else the model's."""
    return role_path + (field,) if getattr(role, field) is not None else model_path + (field,)


def placement(stack: InferenceStack) -> Iterator[Diagnostic]:
    pools = {p.name: p for p in stack.spec.gpu_pools}
    for i, m in enumerate(stack.spec.models):
        base = ("spec", "models", i)
        yield from _placement_problems(base + ("placement",), base + ("parallelism",), m.placement, m.parallelism, pools)
        for _name, role, path in _roles(m, base):
            if role.placement is None and role.parallelism is None:
                continue  # the model's own, checked above
            yield from _placement_problems(
                _role_field(role, path, base, "placement"),
                _role_field(role, path, base, "parallelism"),
                role.placement or m.placement,
                role.parallelism or m.parallelism,
                pools,
            )


def _scaling_problems(
    replicas_path: tuple[str | int, ...],
    autoscaling_path: tuple[str | int, ...],
    r: ReplicasSpec,
    a: AutoscalingSpec,
    optimizer_on: bool,
) -> Iterator[Diagnostic]:
    if r.max is not None and r.max < r.min:
        yield Diagnostic(
            replicas_path + ("max",), f"replicas.max ({r.max}) is below replicas.min ({r.min})", expected="max >= min"
        )
    if a.policy == "none" and r.max is not None and r.max != r.min:
        yield Diagnostic(
            replicas_path + ("max",),
            f"replicas.max is {r.max} but autoscaling.policy is none, so the count is fixed at min ({r.min})",
            expected="max equal to min without autoscaling",
            hint="set autoscaling.policy (hpa, kpa or apa) or remove replicas.max",
        )
    if a.policy != "none" and (r.max if r.max is not None else r.min) == 0:
        yield Diagnostic(
            replicas_path + ("max",),
            f"an autoscaled model needs room to scale, but replicas.max is {r.max if r.max is not None else r.min}",
            expected="replicas.max >= 1",
        )
    if a.policy == "hpa" and not a.use_keda and r.min == 0:
        yield Diagnostic(
            replicas_path + ("min",),
            "a HorizontalPodAutoscaler cannot scale to zero",
            expected="replicas.min >= 1 with policy hpa (without useKeda)",
            hint="use autoscaling.policy kpa or apa, or useKeda: true, to scale to zero",
        )
    metric = AUTOSCALING_METRICS[a.metric]
    if a.policy != "none" and metric.max_target is not None and a.target > metric.max_target:
        yield Diagnostic(
            autoscaling_path + ("target",),
            f"target {a.target:g} is above the largest meaningful value of {a.metric}",
            expected=f"0 < target <= {metric.max_target:g}",
        )
    if a.policy != "none" and metric.source == "optimizer" and not optimizer_on:
        yield Diagnostic(
            autoscaling_path + ("metric",),
            f"metric {a.metric} is published by the optimizer, which is not enabled",
            expected="spec.optimizer present and enabled",
            hint="add `optimizer: {}` under spec, or pick an engine metric",
        )
    if a.policy == "hpa" and not a.use_keda and metric.sum_with:
        yield Diagnostic(
            autoscaling_path + ("metric",),
            f"metric {a.metric} sums " + " + ".join(metric.names) + ", but an HPA Pods metric reads one metric name",
            expected="with policy hpa and no KEDA: a single-name metric such as num_requests_running",
            hint="set autoscaling.useKeda: true (its Prometheus query sums them), or use policy kpa or apa",
        )
    if a.use_keda and a.policy != "hpa":
        yield Diagnostic(
            autoscaling_path + ("useKeda",),
            f"useKeda applies to policy hpa, not {a.policy}",
            expected="policy: hpa with useKeda: true",
        )


def replicas_and_autoscaling(stack: InferenceStack) -> Iterator[Diagnostic]:
    optimizer_on = stack.spec.optimizer is not None and stack.spec.optimizer.enabled
    for i, m in enumerate(stack.spec.models):
        base = ("spec", "models", i)
        yield from _scaling_problems(base + ("replicas",), base + ("autoscaling",), m.replicas, m.autoscaling, optimizer_on)
        for _name, role, path in _roles(m, base):
            if role.replicas is None and role.autoscaling is None:
                continue  # the model's own, checked above
            yield from _scaling_problems(
                _role_field(role, path, base, "replicas"),
                _role_field(role, path, base, "autoscaling"),
                role.replicas or m.replicas,
                role.autoscaling or m.autoscaling,
                optimizer_on,
            )


def sections(stack: InferenceStack) -> Iterator[Diagnostic]:
    spec = stack.spec
    kv_on = spec.kv_cache is not None and spec.kv_cache.enabled
    gateway_on = spec.gateway is not None and spec.gateway.enabled
    for i, m in enumerate(spec.models):
        if m.kv_cache.enabled and not kv_on:
            yield Diagnostic(
                ("spec", "models", i, "kvCache", "enabled"),
                "this model uses the shared KV-cache pool, which is not enabled",
                expected="spec.kvCache present and enabled",
                hint="add `kvCache: {}` under spec",
            )
        if "routing" in m.model_fields_set and not gateway_on:
            yield Diagnostic(
                ("spec", "models", i, "routing"),
                "routing is done by the gateway, which is not enabled",
                expected="spec.gateway present and enabled",
                hint="add `gateway: {}` under spec, or remove routing",
            )
    if spec.gateway is not None:
        tiers = spec.gateway.rate_limits.tiers
        if spec.gateway.rate_limits.default_tier not in tiers:
            yield Diagnostic(
                ("spec", "gateway", "rateLimits", "defaultTier"),
                f'unknown tier "{spec.gateway.rate_limits.default_tier}"',
                expected="a name under rateLimits.tiers: " + ", ".join(tiers),
                hint=did_you_mean(spec.gateway.rate_limits.default_tier, tiers),
            )
    if spec.diagnostics is not None and spec.diagnostics.pools is not None:
        pools = [p.name for p in spec.gpu_pools]
        for j, name in enumerate(spec.diagnostics.pools):
            if name not in pools:
                yield Diagnostic(
                    ("spec", "diagnostics", "pools", j),
                    f'unknown pool "{name}"',
                    expected="a name under gpuPools: " + ", ".join(pools),
                    hint=did_you_mean(name, pools),
                )


def engine_settings(stack: InferenceStack) -> Iterator[Diagnostic]:
    for i, m in enumerate(stack.spec.models):
        base = ("spec", "models", i, "engine")
        uses_kv_pool = m.kv_cache.enabled and stack.spec.kv_cache is not None and stack.spec.kv_cache.enabled
        gateway = stack.spec.gateway
        flow = gateway.flow_control if gateway is not None and gateway.enabled else None
        priority = flow is not None and flow.enabled and flow.engine_priority
        transfer = m.disaggregation.transfer if m.disaggregation is not None else None
        derived = derived_args(m.engine.type, uses_kv_pool=uses_kv_pool, transfer=transfer, uses_engine_priority=priority)
        for key in m.engine.args:
            path = base + ("args", key)
            value = m.engine.args[key]
            if not _ARG_KEY.match(key):
                yield Diagnostic(path, f'engine argument "{key}" is not camelCase', expected="e.g. maxNumSeqs for --max-num-seqs")
            elif isinstance(value, str) and _CONTROL.search(value):
                yield Diagnostic(
                    path,
                    f'the value of engine argument "{key}" holds a control character',
                    expected="one line of text without tabs, newlines or other control characters",
                    hint="engine flags become one command-line word each (and part of Ray's shell line)",
                )
            elif key in derived:
                yield Diagnostic(
                    path,
                    f'engine argument "{key}" is derived by the compiler',
                    expected="engine arguments the compiler does not set",
                    hint=derived[key],
                )
        for key in m.engine.env:
            if key in NIXL_ENV and transfer == "nixl" and m.engine.type == "vllm":
                yield Diagnostic(
                    base + ("env", key),
                    f"{key} is set by the compiler for transfer nixl",
                    expected="engine.env without the NIXL side channel's variables",
                    hint="each pod's side channel listens on its own IP at a port the compiler also admits in the "
                    "NetworkPolicy; remove it",
                )
            elif not _ENV_NAME.match(key):
                yield Diagnostic(
                    base + ("env", key),
                    f'"{key}" is not a valid environment variable name',
                    expected="letters, digits and _, not starting with a digit",
                )
            elif credential_like_name(key):
                yield Diagnostic(
                    base + ("env", key),
                    f"{key} looks like a credential and would be written into the manifests in plain text",
                    expected="no credentials inline; secrets are accepted only by reference",
                    hint=f"put {key} in a Kubernetes Secret and name that Secret in source.secretRef "
                    "(its keys become the engine's environment)",
                )


_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def sources(stack: InferenceStack) -> Iterator[Diagnostic]:
    for i, m in enumerate(stack.spec.models):
        if m.arch is not None and m.arch not in MODEL_ARCHS:
            yield Diagnostic(
                ("spec", "models", i, "arch"),
                f'unknown architecture "{m.arch}"',
                expected="a catalogue architecture: " + ", ".join(sorted(MODEL_ARCHS)),
                hint=did_you_mean(m.arch, sorted(MODEL_ARCHS)),
            )
        if m.source.endpoint is not None and not m.source.uri.startswith(("s3://", "gs://")):
            yield Diagnostic(
                ("spec", "models", i, "source", "endpoint"),
                "source.endpoint is the S3-compatible endpoint of s3:// and gs:// sources",
                expected="an s3:// or gs:// source, or no endpoint",
            )
        if m.source.uri.startswith("pvc://"):
            claim = m.source.uri.removeprefix("pvc://").partition("/")[0]
            if not _SUBDOMAIN.match(claim) or len(claim) > 253:
                yield Diagnostic(
                    ("spec", "models", i, "source", "uri"),
                    f'"{claim}" is not a valid PersistentVolumeClaim name',
                    expected="pvc://<claim>/<path inside the claim>, the claim a lowercase DNS name",
                )


def labels(stack: InferenceStack) -> Iterator[Diagnostic]:
    maps: list[tuple[tuple[str | int, ...], dict[str, str]]] = [(("metadata", "labels"), stack.metadata.labels)]
    maps += [(("spec", "gpuPools", i, "nodeSelector"), p.node_selector or {}) for i, p in enumerate(stack.spec.gpu_pools)]
    network = stack.spec.network
    maps += [(("spec", "network", "scrapers", i, "podSelector"), p.pod_selector) for i, p in enumerate(network.scrapers)]
    maps += [(("spec", "network", "clients", i, "podSelector"), p.pod_selector) for i, p in enumerate(network.clients or [])]
    for base, mapping in maps:
        for key, value in mapping.items():
            if not _LABEL_NAME.match(key):
                yield Diagnostic(
                    base + (key,),
                    f'"{key}" is not a valid label key',
                    expected="[prefix/]name, name at most 63 characters of letters, digits, -, _ and .",
                )
            elif not _LABEL_VALUE.match(value):
                yield Diagnostic(
                    base + (key,),
                    f'"{value}" is not a valid label value',
                    expected="at most 63 characters of letters, digits, -, _ and ., alphanumeric at both ends",
                )


def routes(stack: InferenceStack) -> Iterator[Diagnostic]:
    """Weighted routes: a gateway to run them, existing targets, names that do not hide a model."""
    spec = stack.spec
    if not spec.routes:
        return
    if spec.gateway is None or not spec.gateway.enabled:
        yield Diagnostic(("spec", "routes"), "routes are resolved by the gateway, which is not enabled",
                         expected="spec.gateway present and enabled", hint="add `gateway: {}` under spec, or remove routes")
    yield from _unique([(("spec", "routes", i, "name"), r.name) for i, r in enumerate(spec.routes)], "route name")
    models = [m.name for m in spec.models]
    served = {m.served_model_name or m.name: m.name for m in spec.models}
    adapters = {a.name: m.name for m in spec.models for a in m.adapters}
    for i, route in enumerate(spec.routes):
        targets = [t.model for t in route.targets]
        if route.name in adapters:
            yield Diagnostic(("spec", "routes", i, "name"), f'route "{route.name}" has the name of an adapter of '
                             f'model "{adapters[route.name]}"', expected="a route name no adapter uses",
                             hint="rename the route")
        elif route.name in served and served[route.name] not in targets:
            yield Diagnostic(("spec", "routes", i, "name"), f'route "{route.name}" would hide model '
                             f'"{served[route.name]}", which is not among its targets',
                             expected="a new OpenAI name, or the name of a model the route splits",
                             hint=f'add a target {{model: {served[route.name]}, weight: ...}} or rename the route')
        for j, target in enumerate(route.targets):
            if target.model not in models:
                yield Diagnostic(("spec", "routes", i, "targets", j, "model"), f'unknown model "{target.model}"',
                                 expected="a name under spec.models: " + ", ".join(models),
                                 hint=did_you_mean(target.model, models))


#: Environment variables the compiler sets on vLLM engines that hand KV over through NIXL.
NIXL_ENV = ("VLLM_NIXL_SIDE_CHANNEL_HOST", "VLLM_NIXL_SIDE_CHANNEL_PORT")

_TRANSFER_HINTS = {
    ("sglang", "kv-pool"): "the KV-cache pool's connector is a vLLM connector; SGLang hands the KV cache over "
    "with its own transfer engines: transfer: mooncake (or nixl)",
    ("vllm", "mooncake"): "mooncake is SGLang's transfer backend; for vLLM use nixl (GPU fabrics) or kv-pool "
    "(the project's KV-cache pool)",
}


def disaggregation(stack: InferenceStack) -> Iterator[Diagnostic]:
    """Prefill/decode disaggregation: a transfer the engine runs, what that transfer needs, and
    the combinations the plan cannot express (LoRA adapters, multi-node roles, the optimizer)."""
    spec = stack.spec
    kv_on = spec.kv_cache is not None and spec.kv_cache.enabled
    gateway_on = spec.gateway is not None and spec.gateway.enabled
    per_node = {p.name: p.gpus_per_node for p in spec.gpu_pools}
    for i, m in enumerate(spec.models):
        pd = m.disaggregation
        if pd is None:
            continue
        base = ("spec", "models", i)
        path = base + ("disaggregation",)
        engine = m.engine.type
        if pd.transfer not in PD_TRANSFERS[engine]:
            yield Diagnostic(
                path + ("transfer",),
                f"transfer {pd.transfer} is not one {engine} runs",
                expected=f"with engine.type {engine}: " + " or ".join(PD_TRANSFERS[engine]),
                hint=_TRANSFER_HINTS.get((engine, pd.transfer), ""),
            )
        elif pd.transfer == "kv-pool" and not kv_on:
            yield Diagnostic(
                path + ("transfer",),
                "transfer kv-pool hands the KV cache over through the shared KV-cache pool, which is not enabled",
                expected="spec.kvCache present and enabled",
                hint="add `kvCache: {}` under spec, or use transfer: nixl",
            )
        if pd.transfer == "nixl" and engine == "vllm" and m.kv_cache.enabled:
            yield Diagnostic(
                base + ("kvCache", "enabled"),
                "a vLLM engine loads one KV connector, and transfer nixl loads NixlConnector",
                expected="kvCache.enabled: false with transfer nixl",
                hint="use transfer: kv-pool to hand prefills over through the shared pool (its connector then serves both)",
            )
        if not gateway_on:
            yield Diagnostic(
                path,
                "disaggregation pairs a prefill pod with a decode pod per request in the gateway, which is not enabled",
                expected="spec.gateway present and enabled",
                hint="add `gateway: {}` under spec, or remove disaggregation",
            )
        if m.adapters:
            yield Diagnostic(
                base + ("adapters",),
                "LoRA adapters are not supported with disaggregation yet: the adapter sidecar places each adapter "
                "on some of a model's pods without knowing their roles, and a request's prefill and decode pods "
                "must both hold its adapter",
                expected="no adapters on a disaggregated model",
                hint="serve the adapters from a second, aggregated model with the same source",
            )
        for name, role, role_path in _roles(m, base):
            placement = role.placement or m.placement
            parallelism = role.parallelism or m.parallelism
            gpus = parallelism.tensor * parallelism.pipeline
            too_big = [p for p in placement.pools if p in per_node and gpus > per_node[p]]
            if too_big:
                yield Diagnostic(
                    _role_field(role, role_path, base, "parallelism"),
                    f'a {name} replica of {gpus} GPUs spans several nodes of pool "{too_big[0]}" '
                    f"({per_node[too_big[0]]} GPUs each); multi-node (KubeRay) replicas are not supported with "
                    "disaggregation yet",
                    expected=f"tensor x pipeline <= {per_node[too_big[0]]} for each role",
                    hint="fit each role's replica on one node (more replicas instead of more pipeline stages)",
                )
            autoscaling = role.autoscaling or m.autoscaling
            if autoscaling.policy != "none" and AUTOSCALING_METRICS[autoscaling.metric].source == "optimizer":
                yield Diagnostic(
                    _role_field(role, role_path, base, "autoscaling") + ("metric",),
                    f"the optimizer places whole models; the {name} role of a disaggregated model cannot follow "
                    "its optimizer_desired_replicas",
                    expected="an engine metric for each role (e.g. num_requests_waiting for prefill, kv_cache_usage "
                    "for decode)",
                )


#: Every cross-reference rule, in the order they run.
RULES: tuple[Rule, ...] = (
    unique_names,
    pool_fields,
    placement,
    replicas_and_autoscaling,
    sections,
    engine_settings,
    sources,
    labels,
    routes,
    disaggregation,
)


def check_references(stack: InferenceStack) -> list[Diagnostic]:
    """Every cross-reference problem of the stack (empty when it is consistent)."""
    return [d for rule in RULES for d in rule(stack)]
