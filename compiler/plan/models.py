"""Planning one model: workloads per pool, replica split, engine command, pod features.

- one workload per (model, placement pool); its name is the model's name when the model has
  one pool, else ``<model>-<pool>``;
- a fixed replica count is split over the pools as evenly as possible, the first pools
  taking the remainder: pool k of n gets ``min // n + (1 if k < min % n else 0)``;
  an autoscaled model's workloads carry no count (``replicas: None``) so GitOps never
  fights the autoscaler;
- a replica needing more GPUs than one node of its pool holds is multi-node (KubeRay): it
  spans ``nodes = ceil(tensor x pipeline / gpusPerNode)`` pods and is one RayCluster
  ``<workload>-<k>`` per replica;
- the engine's command line (:mod:`compiler.engine_args`), image, env, secret and volumes;
- KV-cache events (the gateway's prefix index ``kv-events``, vLLM only): ``--kv-events-config``
  publishing on ``KV_EVENTS_PORT`` and ``--block-size`` equal to the index's blocks;
- pod features applied to every engine pod of the model: the LoRA sidecar (``adapters``)
  and the KV pool's connector (``kvCache.enabled`` with the pool on, vLLM): ``--block-size``
  (the pool's, so every engine derives equal keys) and ``--kv-transfer-config``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Literal

from pydantic import ValidationError

from aibrix_spec import ImagesSpec
from aibrix_spec.catalog import MODEL_ARCHS, arch_from_source
from aibrix_spec.components.kv import parse_quantity
from aibrix_spec.components.sidecar import SidecarAdapter
from aibrix_spec.model_cache import cache_key
from aibrix_spec.models import AdapterSpec

from ..defaults import ResolvedModel, ResolvedStack
from ..engine_args import ENGINE_PRIORITY_ARG, EngineCommand, engine_command, weights_location
from ..errors import Diagnostic
from .disaggregation import pairing, role_args, role_pod, role_selector
from .kv_connector import kv_connector_args
from .names import ENGINE, KV_EVENTS_PORT
from .types import AdapterPlan, Labels, ModelCachePlan, ModelPlan, PoolPlan, RolePlan, WeightsPlan, WorkloadPlan

__all__ = [
    "ADAPTER_PVC_ROOT",
    "ADAPTER_REGISTRY_DIR",
    "ADAPTER_TOKEN_DIR",
    "GCS_ENDPOINT",
    "MODEL_CACHE_MOUNT",
    "engine_requests",
    "model_arch_of",
    "model_selector",
    "plan_models",
    "plan_weights",
    "split",
    "workloads_on",
]

#: Where pvc:// adapters are mounted in the engine and the sidecar.
ADAPTER_PVC_ROOT = "/adapter-volumes"
#: Where the sidecar finds the https:// adapters' bearer token (key ``token`` of their Secret).
ADAPTER_TOKEN_DIR = "/var/run/secrets/aibrix-adapter-token"
#: Where the sidecar finds oci:// adapters' registry credentials ($DOCKER_CONFIG/config.json).
ADAPTER_REGISTRY_DIR = "/var/run/secrets/aibrix-adapter-registry"
#: Where engine pods mount the model cache (downloaded weights live at <mount>/<cache key>).
MODEL_CACHE_MOUNT = "/var/cache/aibrix-models"
#: gs:// through Cloud Storage's S3-compatible XML API (HMAC keys as AWS_* variables).
GCS_ENDPOINT = "https://storage.googleapis.com"
_DOWNLOADED = ("s3://", "gs://", "https://", "oci://")


def _cache(stack: ResolvedStack) -> ModelCachePlan:
    spec = stack.model_cache
    if spec is None:
        return ModelCachePlan(kind="emptyDir", mount=MODEL_CACHE_MOUNT)
    return ModelCachePlan(
        kind=spec.type,
        mount=MODEL_CACHE_MOUNT,
        host_path=spec.path if spec.type == "hostPath" else None,
        claim=spec.claim_name if spec.type == "pvc" else None,
        max_bytes=parse_quantity(spec.max_size),
    )


def plan_weights(stack: ResolvedStack, m: ResolvedModel) -> WeightsPlan:
    """hf:// from the hub and pvc:// from the volume, as the engine reads them; s3:// and gs://
    streamed by vLLM's Run:ai Model Streamer (``loader: auto`` without a model cache, or
    ``stream``); every other downloaded source (and any with ``loader: download``) fetched by an
    init container into the model cache (a shared one, or a pod-local emptyDir)."""
    source = m.spec.source
    uri = source.uri
    if uri.startswith("hf://"):
        return WeightsPlan(uri=uri, loader="hub", model_arg=uri.removeprefix("hf://"))
    if uri.startswith("pvc://"):
        return WeightsPlan(uri=uri, loader="volume", model_arg=weights_location(uri))
    object_store = uri.startswith(("s3://", "gs://"))
    endpoint = source.endpoint or (GCS_ENDPOINT if uri.startswith("gs://") else None)
    if endpoint is not None:
        endpoint = endpoint.rstrip("/")
    streamable = object_store and m.spec.engine.type == "vllm"
    if source.loader == "stream" or (source.loader == "auto" and streamable and stack.model_cache is None):
        # The streamer reads gs:// through the same S3-compatible API the downloader uses.
        streamed = "s3://" + uri.split("://", 1)[1]
        return WeightsPlan(uri=uri, loader="stream", model_arg=streamed, load_format="runai_streamer", endpoint=endpoint)
    cache = _cache(stack)
    return WeightsPlan(
        uri=uri,
        loader="download",
        model_arg=f"{cache.mount}/{cache_key(uri)}",
        endpoint=endpoint,
        dest=f"{cache.mount}/{cache_key(uri)}",
        cache=cache,
        downloader_image=stack.images.downloader,
        token_secret=source.secret_ref if uri.startswith("https://") else None,
        registry_secret=source.secret_ref if uri.startswith("oci://") else None,
    )


def check_loader(m: ResolvedModel) -> list[Diagnostic]:
    """``loader: stream`` needs vLLM and an object store; downloads need a downloaded source."""
    source = m.spec.source
    path = ("spec", "models", m.index, "source", "loader")
    if source.loader == "stream" and not (source.uri.startswith(("s3://", "gs://")) and m.spec.engine.type == "vllm"):
        return [
            Diagnostic(
                path,
                f"loader: stream reads s3:// or gs:// weights with vLLM's Run:ai Model Streamer; model {m.name} "
                f"runs {m.spec.engine.type} from {source.uri.split('://')[0]}://",
                expected="loader: auto or download",
                hint="SGLang and other sources are downloaded by an init container",
            )
        ]
    if source.loader == "download" and not source.uri.startswith(_DOWNLOADED):
        return [
            Diagnostic(
                path,
                f"loader: download fetches s3://, gs://, https:// and oci:// sources; {source.uri.split('://')[0]}:// "
                "is read by the engine itself",
                expected="loader: auto",
            )
        ]
    if source.loader != "auto" and "loadFormat" in m.spec.engine.args and source.uri.startswith(("s3://", "gs://")):
        return [
            Diagnostic(
                ("spec", "models", m.index, "engine", "args", "loadFormat"),
                "engine.args.loadFormat conflicts with source.loader",
                expected="one of them",
                hint="source.loader: stream sets --load-format runai_streamer",
            )
        ]
    return []


def model_arch_of(m: ResolvedModel) -> str | None:
    """The catalogue architecture: explicit ``arch``, else the name or served name the catalogue
    knows, else the one a well-known source URI names."""
    if m.spec.arch is not None:
        return m.spec.arch
    return next((n for n in (m.name, m.served_name) if n in MODEL_ARCHS), None) or arch_from_source(m.spec.source.uri)


def split(total: int, parts: int) -> list[int]:
    """``total`` over ``parts`` as evenly as possible, the first parts taking the remainder."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _labels(**pairs: str) -> Labels:
    return tuple(sorted(pairs.items()))


def model_selector(stack_name: str, model: str) -> Labels:
    """Labels that select a model's serving pods."""
    return _labels(
        **{"app.kubernetes.io/component": ENGINE, "app.kubernetes.io/instance": stack_name, "model.aibrix.ai/name": model}
    )


def _tracing_args(stack: ResolvedStack, m: ResolvedModel) -> dict[str, str | int | bool]:
    """The engine's OpenTelemetry flags: it continues the gateway's spans (the W3C traceparent
    the gateway sends) and exports its own to the same collector."""
    tracing = stack.observability.tracing
    if tracing is None:
        return {}
    if m.spec.engine.type == "sglang":  # SGLang takes host:port and a switch
        return {"enableTrace": True, "otlpTracesEndpoint": tracing.otlp_endpoint.split("://", 1)[1].rstrip("/")}
    return {"otlpTracesEndpoint": tracing.otlp_endpoint}


def uses_kv_events(stack: ResolvedStack, m: ResolvedModel) -> bool:
    """The gateway's prefix index for this model is fed by the engines' KV-cache events."""
    return stack.gateway.enabled and m.spec.routing.parameters.prefix_cache_aware.index == "kv-events"


def _kv_events_args(stack: ResolvedStack, m: ResolvedModel, problems: list[Diagnostic]) -> dict[str, str | int | float | bool]:
    """vLLM's --kv-events-config (a ZMQ publisher on every interface, port KV_EVENTS_PORT) and
    --block-size equal to the gateway's blocks, so each event block is one index block."""
    path = ("spec", "models", m.index, "routing", "parameters", "prefixCacheAware", "index")
    if m.spec.engine.type != "vllm":
        problems.append(Diagnostic(
            path,
            f"prefix index kv-events needs vLLM's KV-cache events; model {m.name} runs {m.spec.engine.type}",
            expected="index: decisions, or engine.type: vllm",
            hint="SGLang's --kv-events-config publishes radix-cache pages (page size 1 by default) with its own "
                 "hashes; the gateway does not translate those yet",
        ))  # fmt: skip
        return {}
    blocks = m.spec.routing.parameters.prefix_cache_aware.block_size_tokens
    pooled = uses_kv_pool(stack, m) or (m.spec.disaggregation is not None and m.spec.disaggregation.transfer == "kv-pool")
    engine_blocks = stack.kv_cache.block_size_tokens if pooled else m.spec.engine.args.get("blockSize")
    if engine_blocks is not None and engine_blocks != blocks:
        problems.append(Diagnostic(
            ("spec", "models", m.index, "routing", "parameters", "prefixCacheAware", "blockSizeTokens"),
            f"model {m.name}'s engine uses blocks of {engine_blocks} tokens, its prefix index {blocks}; "
            "KV events report the engine's blocks",
            expected=f"blockSizeTokens: {engine_blocks}",
        ))  # fmt: skip
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{KV_EVENTS_PORT}", "topic": ""}
    return {"blockSize": blocks, "kvEventsConfig": json.dumps(config, separators=(",", ":"))}


def uses_engine_priority(stack: ResolvedStack, m: ResolvedModel) -> bool:
    """vLLM engines order their queue by the gateway's priority (flow control's engine side).
    vLLM refuses a nonzero priority unless started with --scheduling-policy priority."""
    flow = stack.gateway.flow_control
    return stack.gateway.enabled and flow.enabled and flow.engine_priority and m.spec.engine.type == "vllm"


def uses_kv_pool(stack: ResolvedStack, m: ResolvedModel) -> bool:
    return stack.kv_cache.enabled and m.spec.kv_cache.enabled and m.spec.engine.type == "vllm"


def _sidecar_uri(uri: str) -> str:
    if uri.startswith("pvc://"):
        return f"file://{ADAPTER_PVC_ROOT}/{uri.removeprefix('pvc://')}"
    return uri


def _one_secret(m: ResolvedModel, scheme: str, what: str, problems: list[Diagnostic]) -> str | None:
    refs = [
        (j, a.source.secret_ref) for j, a in enumerate(m.spec.adapters) if a.source.uri.startswith(scheme) and a.source.secret_ref
    ]
    if scheme == "hf://":  # the model's own Secret is already the engine's environment
        refs = [(j, ref) for j, ref in refs if ref != m.spec.source.secret_ref]
    names = sorted({ref for _j, ref in refs if ref is not None})
    if len(names) > 1:
        j = next(j for j, ref in refs if ref == names[1])
        problems.append(
            Diagnostic(
                ("spec", "models", m.index, "adapters", j, "source", "secretRef"),
                f"{scheme} adapters of one model must share one Secret; found {', '.join(names)}",
                expected=f"one Secret holding {what} for every {scheme} adapter of this model",
                hint="merge the keys into one Secret and reference it from each adapter",
            )
        )
    return names[0] if names else None


def _sidecar_adapter(adapter: AdapterSpec, replicas: int, secrets: dict[str, str | None]) -> SidecarAdapter:
    """One sidecar entry; only the settings its source needs are set (the config lists set fields)."""
    uri = adapter.source.uri
    extra: dict[str, str] = {}
    endpoint = adapter.source.endpoint or (GCS_ENDPOINT if uri.startswith("gs://") else None)
    if endpoint is not None and uri.startswith(("s3://", "gs://")):
        extra["endpoint"] = endpoint.rstrip("/")
    if uri.startswith("https://") and secrets["https://"] is not None:
        extra["token_file"] = f"{ADAPTER_TOKEN_DIR}/token"
    if uri.startswith("oci://") and secrets["oci://"] is not None:
        extra["docker_config"] = ADAPTER_REGISTRY_DIR
    return SidecarAdapter(name=adapter.name, uri=_sidecar_uri(uri), replicas=replicas, **extra)


#: What each source kind's Secret holds, for the one-Secret-per-kind diagnostic.
_SECRET_KEYS = {
    "hf://": "HF_TOKEN",
    "s3://": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "gs://": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (Cloud Storage HMAC keys)",
    "https://": "token (a bearer token)",
    "oci://": ".dockerconfigjson (a kubernetes.io/dockerconfigjson Secret)",
}


def _adapters(m: ResolvedModel, images: ImagesSpec, problems: list[Diagnostic]) -> AdapterPlan | None:
    """The sidecar's adapters (an adapter without replicas is wanted on every pod, written as
    replicas.max: placement never uses more pods than are ready); one Secret per source kind,
    since the sidecar holds one set of variables (or one mounted file) per kind."""
    if not m.spec.adapters:
        return None
    every_pod = max(1, m.replicas_max)
    secrets = {scheme: _one_secret(m, scheme, what, problems) for scheme, what in _SECRET_KEYS.items()}
    entries = []
    for j, adapter in enumerate(m.spec.adapters):
        try:
            entries.append(_sidecar_adapter(adapter, adapter.replicas or every_pod, secrets))
        except ValidationError:
            problems.append(
                Diagnostic(
                    ("spec", "models", m.index, "adapters", j, "source", "uri"),
                    f'adapter "{adapter.name}": the sidecar cannot fetch "{adapter.source.uri}"',
                    expected=(
                        "hf://org/repo[@revision], s3://bucket/prefix, gs://bucket/prefix, https://host/path, "
                        "oci://registry/repo:tag or pvc://claim/path"
                    ),
                    hint=(
                        "hf:// takes exactly org/repo (no sub-folder); s3:// a lowercase bucket name; https:// a path "
                        "to a file or archive; oci:// registry/repository:tag"
                    ),
                )
            )
    uris = [a.source.uri for a in m.spec.adapters if a.source.uri.startswith("pvc://")]
    return AdapterPlan(
        image=images.sidecar,
        config_map=f"{m.name}-adapters",
        rbac_name=f"{m.name}-sidecar",
        adapters=tuple(entries),
        max_loras=m.max_loras,
        hf_secret=secrets["hf://"],
        s3_secret=secrets["s3://"],
        gs_secret=secrets["gs://"],
        token_secret=secrets["https://"],
        registry_secret=secrets["oci://"],
        pvc_claims=tuple(sorted({uri.removeprefix("pvc://").partition("/")[0] for uri in uris})),
    )


def engine_requests(m: ResolvedModel, pool: PoolPlan, pod_gpus: int) -> tuple[str, str]:
    """(cpu, memory) requests of one engine pod, unless ``engine.resources`` sets them: 2 CPUs
    plus 2 per GPU (tokenizer, scheduler, one worker process per GPU), and 8 GiB plus half the
    pod's GPU memory (weights are staged through host memory while loading). Requests without
    limits: the pod is Burstable, not BestEffort, so node pressure evicts it last among peers,
    and no CPU throttling or OOM limit hits a process that maps its weights."""
    resources = m.spec.engine.resources
    cpu = resources.cpu or str(2 + 2 * pod_gpus)
    memory = resources.memory or f"{8 + math.ceil(0.5 * pool.memory_gib * pod_gpus)}Gi"
    return cpu, memory


def workloads_on(
    m: ResolvedModel,
    base_name: str,
    pool_names: tuple[str, ...] | list[str],
    pools: dict[str, PoolPlan],
    *,
    replicas_min: int,
    gpus_per_replica: int,
    autoscaled: bool,
    selector: Labels,
    **role: object,
) -> tuple[WorkloadPlan, ...]:
    """One workload per pool (``base_name``, or ``<base_name>-<pool>`` on several pools);
    ``role`` holds a disaggregated role's own fields (:class:`WorkloadPlan`'s role, command...)."""
    counts = split(replicas_min, len(pool_names))
    out = []
    for k, pool_name in enumerate(pool_names):
        pool = pools[pool_name]
        name = base_name if len(pool_names) == 1 else f"{base_name}-{pool_name}"
        multi_node = gpus_per_replica > pool.gpus_per_node
        replicas = None if autoscaled else counts[k]
        cpu, memory = engine_requests(m, pool, pool.gpus_per_node if multi_node else gpus_per_replica)
        out.append(
            WorkloadPlan(
                name=name,
                pool=pool,
                replicas=replicas,
                gpus_per_replica=gpus_per_replica,
                multi_node=multi_node,
                selector=tuple(sorted((*selector, ("aibrix.ai/gpu-pool", pool_name)))),
                cpu=cpu,
                memory=memory,
                nodes=-(-gpus_per_replica // pool.gpus_per_node),
                ray_clusters=tuple(f"{name}-{i}" for i in range(replicas or 0)) if multi_node else (),
                **role,  # type: ignore[arg-type]
            )
        )
    return tuple(out)


def plan_model(stack: ResolvedStack, m: ResolvedModel, pools: dict[str, PoolPlan], problems: list[Diagnostic]) -> ModelPlan:
    spec = m.spec
    selector = model_selector(stack.name, m.name)
    pd = spec.disaggregation
    # A disaggregated model's pool connector is its transfer (plan/disaggregation.py), not kvCache.enabled.
    kv = uses_kv_pool(stack, m) if pd is None else pd.transfer == "kv-pool"
    events = uses_kv_events(stack, m)
    priority = uses_engine_priority(stack, m)
    problems += check_loader(m)
    weights = plan_weights(stack, m)
    extra = {**spec.engine.args, **(_kv_events_args(stack, m, problems) if events else {})}

    def command(tensor: int, pipeline: int, role_args: dict[str, str | int | float | bool]) -> EngineCommand:
        return engine_command(
            model=weights.model_arg,
            load_format=weights.load_format,
            engine=spec.engine.type,
            uri=spec.source.uri,
            served_name=m.served_name,
            port=spec.engine.port,
            tensor=tensor,
            pipeline=pipeline,
            max_model_len=spec.engine.max_model_len,
            prefix_caching=spec.engine.prefix_caching,
            gpu_memory_utilization=spec.engine.gpu_memory_utilization,
            dtype=spec.engine.dtype,
            lora=(m.max_loras, int(spec.lora.max_rank)) if spec.adapters else None,
            extra={**extra, **role_args, **_tracing_args(stack, m),
                   **({ENGINE_PRIORITY_ARG: "priority"} if priority else {})},
        )

    if pd is None:
        model_command = command(spec.parallelism.tensor, spec.parallelism.pipeline,
                                kv_connector_args(stack, "kv_both") if kv else {})
        workloads = workloads_on(
            m, m.name, spec.placement.pools, pools, replicas_min=m.replicas_min, gpus_per_replica=m.gpus_per_replica,
            autoscaled=spec.autoscaling.policy != "none", selector=selector,
        )
        roles: tuple[RolePlan, ...] = ()

        serving = selector
        gpus, low, high, autoscaled = m.gpus_per_replica, m.replicas_min, m.replicas_max, spec.autoscaling.policy != "none"
    else:
        roles, workloads = _plan_roles(stack, m, pools, selector, command)
        decode = roles[1]
        model_command = next(w.command for w in workloads if w.role == "decode" and w.command is not None)
        serving = decode.selector
        gpus, low, high, autoscaled = decode.gpus_per_replica, decode.replicas_min, decode.replicas_max, decode.autoscaled
    uri = spec.source.uri
    return ModelPlan(
        index=m.index,
        name=m.name,
        served_name=m.served_name,
        engine=spec.engine.type,
        image=stack.images.vllm if spec.engine.type == "vllm" else stack.images.sglang,
        port=spec.engine.port,
        command=model_command,
        env=tuple(sorted(spec.engine.env.items())),
        secret_ref=spec.source.secret_ref,
        pvc_claim=uri.removeprefix("pvc://").partition("/")[0] if uri.startswith("pvc://") else None,
        gpus_per_replica=gpus,
        replicas_min=low,
        replicas_max=high,
        autoscaled=autoscaled,
        workloads=workloads,
        selector=serving,
        labels=_labels(
            **{
                "app.kubernetes.io/name": m.name,
                "model.aibrix.ai/engine": spec.engine.type,  # which metric names its pods expose
                "model.aibrix.ai/name": m.name,
                "model.aibrix.ai/port": str(spec.engine.port),
            }
        ),
        # Defaults left out: a stack and its defaults-pass output give the same gateway file.
        routing=spec.routing.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        slo=spec.slo,
        adapters=_adapters(m, stack.images, problems),
        kv_connector=kv,
        kv_events_port=KV_EVENTS_PORT if events and spec.engine.type == "vllm" else None,
        engine_priority=priority,
        weights=weights,
        arch=model_arch_of(m),
        roles=roles,
        disaggregation=pairing(stack, m, roles) if pd is not None else None,
    )


def _plan_roles(
    stack: ResolvedStack,
    m: ResolvedModel,
    pools: dict[str, PoolPlan],
    selector: Labels,
    command: Callable[[int, int, dict[str, str | int | float | bool]], EngineCommand],
) -> tuple[tuple[RolePlan, ...], tuple[WorkloadPlan, ...]]:
    """A disaggregated model's roles (prefill, then decode) and their workloads: each role on
    its own pools with its own parallelism, replicas and engine flags (plan/disaggregation.py)."""
    roles: list[RolePlan] = []
    workloads: list[WorkloadPlan] = []
    for role in m.roles:
        name: Literal["prefill", "decode"] = "prefill" if role.role == "prefill" else "decode"
        autoscaled = role.autoscaling.policy != "none"
        role_selector_ = role_selector(selector, name)
        roles.append(RolePlan(role=name, gpus_per_replica=role.gpus_per_replica, replicas_min=role.replicas_min,
                              replicas_max=role.replicas_max, autoscaled=autoscaled, selector=role_selector_))
        args = role_args(stack, m, role)
        role_command = command(role.parallelism.tensor, role.parallelism.pipeline, args)
        workloads += workloads_on(
            m, f"{m.name}-{name}", role.pools, pools, replicas_min=role.replicas_min,
            gpus_per_replica=role.gpus_per_replica, autoscaled=autoscaled, selector=role_selector_,
            role=name, command=role_command, **role_pod(m, role),
        )
    return tuple(roles), tuple(workloads)


def plan_models(stack: ResolvedStack, pools: dict[str, PoolPlan], problems: list[Diagnostic]) -> tuple[ModelPlan, ...]:
    return tuple(plan_model(stack, m, pools, problems) for m in stack.models)

