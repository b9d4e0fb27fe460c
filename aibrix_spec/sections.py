"""The stack-wide sections of ``spec``: gateway, kvCache pool, optimizer, diagnostics,
observability and images.

Each optional section is off when absent; writing the section (even ``{}``) turns it on
with the defaults below, and ``enabled: false`` turns it off again while keeping the
settings. Images carry pinned defaults so a stack compiles to the same bytes until
someone changes a pin on purpose.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ._base import SpecModel
from ._types import DnsLabel, Duration, NoSecretStr, Quantity, SecretName, spec_error

__all__ = [
    "TracingSpec",
    "DEFAULT_IMAGES",
    "DiagnosticsSpec",
    "FlowControlSpec",
    "GatewaySpec",
    "ImagesSpec",
    "KvCachePoolSpec",
    "ModelCacheSpec",
    "NetworkSpec",
    "ObservabilitySpec",
    "OptimizerSpec",
    "PeerSpec",
    "ProfilesSpec",
    "RateLimitsSpec",
    "RedisSpec",
    "SaturationSpec",
    "TierSpec",
    "UsersSpec",
]

#: Pinned default images (tags, never ``latest``): the single place to bump them.
DEFAULT_IMAGES: dict[str, str] = {
    "vllm": "vllm/vllm-openai:v0.32.0",
    "sglang": "lmsysorg/sglang:v0.5.4",
    "envoy": "envoyproxy/envoy:v1.40.0",
    "gateway": "ghcr.io/aibrix-stack/gateway:0.1.0",
    "kvCache": "ghcr.io/aibrix-stack/kv-server:0.1.0",
    "scaler": "ghcr.io/aibrix-stack/scaler:0.1.0",
    "optimizer": "ghcr.io/aibrix-stack/optimizer:0.1.0",
    "diagnostics": "ghcr.io/aibrix-stack/diag:0.1.0",
    "sidecar": "ghcr.io/aibrix-stack/sidecar:0.1.0",
    "downloader": "ghcr.io/aibrix-stack/downloader:0.1.0",
}

# Kubernetes quantity suffixes -> factor; the KV-cache server reads the binary ones up to Ti.
_QUANTITY_FACTORS = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
    **{unit: Decimal(1 << (10 * (i + 1))) for i, unit in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
_KV_UNITS = frozenset({"", "Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T"})
_KV_MIN_BYTES, _KV_MAX_BYTES = Decimal(1 << 20), Decimal(64 << 40)

_Image = Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9./_:@-]+$")]


class TierSpec(SpecModel):
    """Per-user limits of one tier (a user's tier comes from the users Secret)."""

    rpm: Annotated[int, Field(ge=1)] = Field(description="Requests per minute.")
    tpm: Annotated[int, Field(ge=1)] = Field(description="Tokens (prompt + completion) per minute.")
    priority: Annotated[int, Field(ge=0, le=1000)] = Field(
        0,
        description=(
            "Priority band of this tier's requests under gateway.flowControl: higher bands are dispatched "
            "first and shed last."
        ),
    )


class RateLimitsSpec(SpecModel):
    """Rate-limit tiers."""

    tiers: dict[DnsLabel, TierSpec] = Field(
        default_factory=lambda: {"default": TierSpec(rpm=600, tpm=200_000)},
        description="Tiers by name.",
    )
    default_tier: DnsLabel = Field("default", description="Tier of users the users Secret does not assign.")


class UsersSpec(SpecModel):
    """Where API keys (and each key's tier) come from."""

    secret_ref: SecretName = Field(description="Secret holding users.yaml (API key hashes and tiers).")


class RedisSpec(SpecModel):
    """Shared store for rate-limit counters across gateway replicas."""

    url: NoSecretStr = Field(
        description="redis://host:port/db (no password inside; use passwordSecretRef).",
        pattern=r"^rediss?://",
    )
    password_secret_ref: SecretName | None = Field(None, description="Secret with key 'password'.")


class SaturationSpec(SpecModel):
    """When an engine counts as full: flow control holds requests rather than send them there."""

    max_waiting_per_engine: Annotated[int, Field(ge=1, le=10_000)] = Field(
        8,
        description=(
            "Requests an engine may have waiting (queued inside it, not running). An engine whose last scrape "
            "shows this many is full; otherwise it has room for (running at its last scrape + this) minus what "
            "the gateway has in flight there, so the fresh in-flight count covers the gap between scrapes."
        ),
    )
    max_kv_cache_usage: Annotated[float, Field(gt=0, le=1)] = Field(
        0.9, description="KV-cache usage (0..1) at which an engine is full."
    )
    max_inflight_per_engine: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None, description="A hard cap on one gateway replica's requests in flight per engine (unset: no cap)."
    )
    under_share_reserve: Annotated[int, Field(ge=0, le=9_999)] | None = Field(
        None,
        description=(
            "Of maxWaitingPerEngine, how many waiting places per engine only users below their fair share of "
            "the model's in-flight requests may take (users over it see maxWaitingPerEngine minus this, and only "
            "they are held back by maxKvCacheUsage). Must be below maxWaitingPerEngine, so a heavy user always "
            "keeps a place. Unset: three quarters of maxWaitingPerEngine, rounded down; 0: off (every user alike)."
        ),
    )

    @model_validator(mode="after")
    def _reserve_below_budget(self) -> SaturationSpec:
        if self.under_share_reserve is not None and self.under_share_reserve >= self.max_waiting_per_engine:
            raise spec_error(
                f"underShareReserve ({self.under_share_reserve}) must be below maxWaitingPerEngine "
                f"({self.max_waiting_per_engine}): users over their fair share would get no waiting place at all",
                expected=f"0..{self.max_waiting_per_engine - 1}", got=str(self.under_share_reserve),
                hint="lower underShareReserve or raise maxWaitingPerEngine")
        return self

    @property
    def reserve(self) -> int:
        """The effective reserve (the default is three quarters of the waiting budget)."""
        if self.under_share_reserve is not None:
            return self.under_share_reserve
        return self.max_waiting_per_engine * 3 // 4


class FlowControlSpec(SpecModel):
    """Per-model queues in the gateway: hold requests until an engine has room (docs/gateway.md)."""

    enabled: bool = Field(
        False,
        description="Hold requests in per-model queues instead of overloading engines; needed for replicas.min 0.",
    )
    queue_timeout: Duration = Field(
        "30s",
        description=(
            "Longest a request waits: then 429 (engines stayed full) or 503 with Retry-After (no engine became "
            "ready: a cold start from zero replicas took longer). At most 1h."
        ),
    )
    max_queue_per_model: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        1000, description="Most requests held per model (per gateway replica); beyond it the lowest priority is shed (429)."
    )
    saturation: SaturationSpec = Field(default_factory=SaturationSpec, description="When an engine is full.")
    fairness: Literal["round-robin", "virtual-time"] = Field(
        "virtual-time",
        description=(
            "Order between users inside a priority band: virtual-time (start-time fair queueing weighted by each "
            "request's token budget, prompt + max_tokens) or round-robin (one request per user in turn)."
        ),
    )
    allow_priority_header: bool = Field(
        False,
        description="Let clients lower (never raise above their tier's) a request's priority with x-request-priority.",
    )
    engine_priority: bool = Field(
        True,
        description=(
            "Also order requests inside vLLM engines: they run with --scheduling-policy priority and the gateway "
            "sets each request's priority (higher tiers first, then users under their fair share). SGLang "
            "engines are left as they are."
        ),
    )


class GatewaySpec(SpecModel):
    """The LLM-aware gateway (Envoy + the ext_proc router)."""

    enabled: bool = Field(True, description="Deploy the gateway.")
    mode: Literal["standalone", "envoy-gateway"] = Field(
        "standalone",
        description="standalone: our own Envoy Deployment; envoy-gateway: Gateway API objects for Envoy Gateway.",
    )
    gateway_class_name: DnsLabel = Field(
        "eg",
        description=(
            "GatewayClass of the Gateway object in mode envoy-gateway (Envoy Gateway's quickstart class is eg); "
            "ignored in standalone mode."
        ),
    )
    envoy_gateway_namespace: DnsLabel = Field(
        "envoy-gateway-system",
        description=(
            "Namespace where Envoy Gateway runs its proxies (mode envoy-gateway): only pods there may call the "
            "engines and the gateway's ext_proc port."
        ),
    )
    replicas: Annotated[int, Field(ge=1, le=100)] = Field(2, description="Gateway (and Envoy) replicas.")
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        1,
        description=(
            "Gateway worker processes per replica (one core each under load; the pod's CPU request grows with "
            "them). Envoy round-robins ext_proc streams over the workers' ports. Mode standalone only."
        ),
    )
    users: UsersSpec | None = Field(None, description="API keys; empty = no authentication.")
    rate_limits: RateLimitsSpec = Field(
        default_factory=RateLimitsSpec, description="Per-user rate-limit tiers and the tier of unassigned users."
    )
    redis: RedisSpec | None = Field(None, description="Shared counters; empty = per-replica counters.")
    request_timeout: Duration = Field("300s", description="Upstream request timeout.")
    flow_control: FlowControlSpec = Field(
        default_factory=FlowControlSpec,
        description="Queues per model with priorities (rateLimits.tiers.<t>.priority) and fairness between users.",
    )
    max_request_body_bytes: int | Quantity = Field(
        8 * 1024 * 1024,
        description=(
            "Largest request body accepted (bytes or a quantity like 16Mi, between 64Ki and 1Gi). Envoy buffers "
            "up to this much and answers larger bodies 413; the gateway's gRPC receive limit is set to match."
        ),
    )

    @field_validator("max_request_body_bytes")
    @classmethod
    def _body_limit(cls, value: int | str) -> int:
        from .components.kv import parse_quantity  # the one quantity parser of aibrix_spec

        size = parse_quantity(value)
        if not MIN_BODY_BYTES <= size <= MAX_BODY_BYTES:
            raise ValueError(f"maxRequestBodyBytes must be between 64Ki and 1Gi, got {value!r}")
        return size

    @model_validator(mode="after")
    def _workers_need_our_envoy(self) -> GatewaySpec:
        if self.workers > 1 and self.mode != "standalone":
            raise spec_error(
                f"gateway.workers is {self.workers}, but mode envoy-gateway sends ext_proc to one port of the gateway",
                expected="workers: 1 with mode envoy-gateway",
                hint="use mode standalone for several workers per replica, or raise gateway.replicas instead",
            )
        return self


#: bounds of ``gateway.maxRequestBodyBytes``: below 64 KiB ordinary prompts fail; above 1 GiB
#: one request would pin that much memory in Envoy and in the gateway.
MIN_BODY_BYTES = 64 * 1024
MAX_BODY_BYTES = 1 << 30


class KvCachePoolSpec(SpecModel):
    """The distributed KV-cache pool that engines share."""

    enabled: bool = Field(True, description="Deploy the pool.")
    replicas: Annotated[int, Field(ge=1, le=256)] = Field(3, description="Pool servers (a StatefulSet).")
    memory_per_replica: Quantity = Field("16Gi", description="Memory each server keeps for KV blocks.")
    eviction: Literal["adaptive", "s3fifo", "lru", "fifo"] = Field(
        "adaptive", description="Eviction policy: adaptive (LRU or S3-FIFO, whichever wins), s3fifo, lru or fifo."
    )
    block_size_tokens: Annotated[int, Field(ge=1, le=1024)] = Field(16, description="Tokens per KV block.")

    @field_validator("memory_per_replica")
    @classmethod
    def _server_memory(cls, value: str) -> str:
        number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", value).groups()  # type: ignore[union-attr]
        size = Decimal(number) * _QUANTITY_FACTORS[unit]
        if not _KV_MIN_BYTES <= size <= _KV_MAX_BYTES:
            raise spec_error(
                f"{value} is not a size one KV-cache server can hold",
                expected="from 1Mi to 64Ti, e.g. 16Gi",
            )
        if unit not in _KV_UNITS:  # the server reads Ki..Ti and k..T only
            raise spec_error(
                f"the unit {unit} is not read by the KV-cache server", expected="a size in Ki, Mi, Gi or Ti, e.g. 16Gi"
            )
        return value


class ProfilesSpec(SpecModel):
    """Where measured GPU profiles come from."""

    config_map_ref: DnsLabel | None = Field(
        None, description="ConfigMap with profile JSON files; empty = derive profiles from the roofline model."
    )


class OptimizerSpec(SpecModel):
    """The GPU-mix optimizer (ILP over pools) feeding the autoscaler."""

    enabled: bool = Field(True, description="Deploy the optimizer.")
    profiles: ProfilesSpec = Field(default_factory=ProfilesSpec, description="GPU profiles.")
    interval: Duration = Field("60s", description="How often the mix is re-solved.")
    solver: Literal["cbc", "highs"] = Field("cbc", description="ILP solver.")


class DiagnosticsSpec(SpecModel):
    """NVML diagnostics on every GPU node (a DaemonSet)."""

    enabled: bool = Field(True, description="Deploy diagnostics.")
    pools: list[DnsLabel] | None = Field(None, description="Pools to cover; empty = every pool.")
    interval: Duration = Field("60s", description="Time between checks.")
    node_condition: bool = Field(
        False, description="Write the AIBrixGPUProblem node condition each pass (adds RBAC on nodes)."
    )
    taint_on_failure: bool = Field(
        False,
        description="Taint the node (aibrix.ai/gpu-unhealthy:NoSchedule) while a check fails (adds RBAC on nodes).",
    )


class TracingSpec(SpecModel):
    """OpenTelemetry traces: one span per request at the gateway, continued by the engines."""

    otlp_endpoint: Annotated[str, Field(pattern=r"^https?://[^\s/@]+(:[0-9]{1,5})?/?$")] = Field(
        description="The OTLP/gRPC collector, e.g. http://otel-collector.monitoring.svc:4317 (https for TLS)."
    )
    sampling_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.01, description="Share of new traces kept; a client's sampled traceparent is always followed."
    )


class ObservabilitySpec(SpecModel):
    """Prometheus Operator objects for what the stack deploys, and traces."""

    enabled: bool = Field(True, description="Emit observability objects.")
    service_monitors: bool = Field(True, description="Emit ServiceMonitors for engines and components.")
    prometheus_rules: bool = Field(False, description="Emit PrometheusRules (SLO alerts).")
    scrape_interval: Duration = Field("30s", description="Scrape interval.")
    dashboards: bool = Field(
        False,
        description=(
            "Emit Grafana dashboards (overview, gateway, engines, autoscaler, KV pool, diagnostics) as ConfigMaps "
            "labelled grafana_dashboard: \"1\" for the Grafana sidecar."
        ),
    )
    tracing: TracingSpec | None = Field(
        None, description="Request traces over OTLP (gateway spans, engines continuing them); independent of enabled."
    )


class ModelCacheSpec(SpecModel):
    """Where downloaded weights are kept so the pods of a node (hostPath) or of the cluster (a
    ReadWriteMany claim) download each model once: keyed by source URI, locked per model, and
    bounded by evicting the least recently used models."""

    type: Literal["hostPath", "pvc"] = Field(
        description=(
            "hostPath: a directory on each GPU node (needs the cluster admin's consent: the pods mount a host "
            "path); pvc: a ReadWriteMany PersistentVolumeClaim shared by every pod."
        )
    )
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/-]*$")] = Field(
        "/var/lib/aibrix/models", description="The node directory (type hostPath)."
    )
    claim_name: DnsLabel | None = Field(None, description="The ReadWriteMany claim (type pvc).")
    max_size: Quantity = Field("500Gi", description="Size bound; least recently used models are evicted past it.")


class PeerSpec(SpecModel):
    """Pods allowed to connect: a namespace (by its name, which only the API server sets) and
    the pods in it (by labels); both given means those pods in that namespace."""

    namespace: DnsLabel | None = Field(None, description="Namespace name; empty = the stack's own namespace.")
    pod_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels of the allowed pods in that namespace; empty = every pod there."
    )


def _prometheus_scrapers() -> list[PeerSpec]:
    return [PeerSpec(namespace="monitoring", pod_selector={"app.kubernetes.io/name": "prometheus"})]


class NetworkSpec(SpecModel):
    """Who may reach the stack. Every pod of the stack gets a default-deny NetworkPolicy plus
    exactly the flows the compiler knows (gateway -> engines, engines -> KV pool, ...)."""

    scrapers: list[PeerSpec] = Field(
        default_factory=_prometheus_scrapers,
        description="Who may scrape metrics ports (and engines' /metrics): Prometheus in namespace monitoring by default.",
    )
    clients: list[PeerSpec] | None = Field(
        None,
        description=(
            "Who may call the stack's OpenAI endpoint: our Envoy (gateway.mode standalone) or, without a gateway, "
            "the engines' API port. Empty = any pod for Envoy (the gateway checks API keys), the stack's own "
            "namespace for bare engines."
        ),
    )


class ImagesSpec(SpecModel):
    """Container images; every default is pinned."""

    vllm: _Image = Field(DEFAULT_IMAGES["vllm"], description="vLLM OpenAI server image.")
    sglang: _Image = Field(DEFAULT_IMAGES["sglang"], description="SGLang server image.")
    envoy: _Image = Field(DEFAULT_IMAGES["envoy"], description="Envoy proxy image (standalone gateway).")
    gateway: _Image = Field(DEFAULT_IMAGES["gateway"], description="Gateway (ext_proc router) image.")
    kv_cache: _Image = Field(DEFAULT_IMAGES["kvCache"], description="KV-cache pool server image.")
    scaler: _Image = Field(DEFAULT_IMAGES["scaler"], description="Autoscaler image.")
    optimizer: _Image = Field(DEFAULT_IMAGES["optimizer"], description="GPU optimizer image.")
    diagnostics: _Image = Field(DEFAULT_IMAGES["diagnostics"], description="GPU diagnostics image.")
    sidecar: _Image = Field(DEFAULT_IMAGES["sidecar"], description="Engine sidecar image.")
    downloader: _Image = Field(
        DEFAULT_IMAGES["downloader"],
        description="The project's runtime image for engine pods' init containers (aibrix-runtime download, the Ray launcher).",
    )
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field("IfNotPresent", description="imagePullPolicy.")
    pull_secret_ref: SecretName | None = Field(None, description="imagePullSecret for private registries.")
