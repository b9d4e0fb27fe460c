"""The plan's types: what the plan pass decides, as frozen data renderers only spell out.

A :class:`Plan` holds one entry per model (its workloads, engine command, pod features)
and one per stack component (gateway, scaler, optimizer, KV pool, diagnostics,
observability), each with its name, selector, ports, image and the URLs other components
use to reach it; :class:`NetworkPlan` holds who may reach whom. Renderers read nothing
else: no spec, no other renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aibrix_spec import SloSpec
from aibrix_spec.components.gateway import FlowControlConfig
from aibrix_spec.components.sidecar import SidecarAdapter
from aibrix_spec.traffic import RouteSpec

from ..engine_args import EngineCommand

__all__ = [
    "AdapterPlan",
    "Component",
    "DiagnosticsPlan",
    "DisaggregationPlan",
    "GatewayPlan",
    "KubeFeatures",
    "KvPoolPlan",
    "ModelCachePlan",
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
    "ScaleUnit",
    "ScalerPlan",
    "WeightsPlan",
    "WorkloadPlan",
]

#: Labels as sorted (key, value) pairs: hashable, and one order everywhere.
Labels = tuple[tuple[str, str], ...]
#: A NetworkPolicy peer (podSelector / namespaceSelector), as Kubernetes spells it.
Peer = dict[str, Any]


@dataclass(frozen=True)
class Component:
    """One of the stack's own workloads: its object name, component label, image and selector."""

    name: str  #: object name and app.kubernetes.io/name
    component: str  #: app.kubernetes.io/component (also the output folder)
    image: str
    selector: Labels  #: labels selecting exactly its pods

    @property
    def match_labels(self) -> dict[str, str]:
        return dict(self.selector)

    @property
    def peer(self) -> Peer:
        """NetworkPolicy peer selecting its pods."""
        return {"podSelector": {"matchLabels": self.match_labels}}


@dataclass(frozen=True)
class PoolPlan:
    """A GPU pool with every default resolved."""

    name: str
    accelerator: str | None
    product: str
    resource_name: str
    gpus_per_node: int
    memory_gib: float
    cost_per_gpu_hour: float
    node_selector: Labels
    tolerations: tuple[Labels, ...]
    runtime_class: str | None = None  #: RuntimeClass of GPU pods, when the pool names one
    max_nodes: int | None = None


@dataclass(frozen=True)
class WorkloadPlan:
    """One Deployment (or set of RayClusters) of a model on one pool."""

    name: str
    pool: PoolPlan
    replicas: int | None  #: None = owned by an autoscaler
    gpus_per_replica: int
    multi_node: bool
    selector: Labels  #: the model's selector plus the pool label
    cpu: str  #: CPU request of each engine pod
    memory: str  #: memory request of each engine pod
    nodes: int = 1  #: pods (nodes) one replica spans: ceil(gpus_per_replica / gpus_per_node)
    ray_clusters: tuple[str, ...] = ()  #: RayCluster names (multi-node only), one per replica
    role: Literal["prefill", "decode"] | None = None  #: a disaggregated model's role (label model.aibrix.ai/role)
    command: EngineCommand | None = None  #: the role's engine command; None = the model's
    env: Labels = ()  #: the role's engine environment (plain values), added to the model's
    pod_ip_env: tuple[str, ...] = ()  #: variables set to the pod's IP (downward API)
    ports: tuple[tuple[str, int], ...] = ()  #: the role's extra named container ports (name, port)

    @property
    def labels(self) -> Labels:
        """Labels naming the workload on its objects beside the model's: its pool, and its role."""
        role = (("model.aibrix.ai/role", self.role),) if self.role is not None else ()
        return (("aibrix.ai/gpu-pool", self.pool.name), *role)


@dataclass(frozen=True)
class ModelCachePlan:
    """Where downloaded weights land: a shared cache (node directory or RWX claim) or, without
    one, a pod-local emptyDir."""

    kind: Literal["emptyDir", "hostPath", "pvc"]
    mount: str  #: where pods mount the cache root
    host_path: str | None = None
    claim: str | None = None
    max_bytes: int | None = None  #: the LRU bound (shared caches only)


@dataclass(frozen=True)
class WeightsPlan:
    """How a model's weights reach its engine."""

    uri: str
    loader: Literal["hub", "volume", "stream", "download"]
    model_arg: str  #: what the engine's --model / --model-path gets
    load_format: str | None = None  #: vLLM --load-format (runai_streamer when streaming)
    endpoint: str | None = None  #: S3-compatible endpoint (streaming env, downloader flag)
    dest: str | None = None  #: download destination (under the cache mount)
    cache: ModelCachePlan | None = None  #: download only
    downloader_image: str = ""
    token_secret: str | None = None  #: Secret with key ``token``: a bearer token (https://)
    registry_secret: str | None = None  #: a dockerconfigjson Secret: registry credentials (oci://)

    def describe(self) -> str:
        """One line for ``explain``."""
        if self.loader == "stream":
            return f"streamed from {self.uri} (Run:ai Model Streamer)"
        if self.loader == "download":
            where = {"emptyDir": "a pod-local emptyDir", "hostPath": "the node cache", "pvc": "the shared claim"}
            return f"downloaded from {self.uri} into {where[self.cache.kind if self.cache else 'emptyDir']}"
        return f"{'from the hub' if self.loader == 'hub' else 'from the volume'}: {self.uri}"


@dataclass(frozen=True)
class AdapterPlan:
    """The LoRA sidecar of a model with adapters: what it loads and the credentials it needs."""

    image: str  #: the sidecar's image
    config_map: str  #: ConfigMap holding the sidecar's config.yaml
    rbac_name: str  #: Role/RoleBinding letting the model's ServiceAccount list/watch pods
    adapters: tuple[SidecarAdapter, ...]  #: validated entries (sidecar-fetchable URIs)
    max_loras: int
    hf_secret: str | None  #: Secret with HF_TOKEN for the engine (None: none, or the model's own)
    s3_secret: str | None  #: Secret with AWS_* keys for the sidecar (s3://)
    gs_secret: str | None  #: Secret with HMAC keys as AWS_* for the sidecar (gs://)
    token_secret: str | None  #: Secret with key ``token`` mounted for the sidecar (https://)
    registry_secret: str | None  #: dockerconfigjson Secret mounted as the sidecar's DOCKER_CONFIG (oci://)
    pvc_claims: tuple[str, ...]  #: claims mounted at /adapter-volumes/<claim>


@dataclass(frozen=True)
class ScaleTarget:
    """One autoscaled workload: bounds, policy and the metric the scaler (or HPA/KEDA) reads."""

    model: str
    served_name: str
    workload: str
    pool: str
    low: int
    high: int
    policy: Literal["hpa", "kpa", "apa"]
    use_keda: bool
    metric: str  #: Prometheus name of the (first) metric, in the engine's dialect
    metric_names: tuple[str, ...]  #: every summed name (concurrency = running + waiting)
    engine: str  #: the engine whose metric dialect the names are in
    source: Literal["engine", "optimizer"]
    target: float
    engine_port: int
    pod_selector: Labels
    optimizer_url: str | None  #: the optimizer's /metrics, when the metric is its gauge
    scale_to_zero_grace_s: float | None  #: set when low is 0: idle time before going to zero
    demand_urls: tuple[str, ...]  #: the gateway replicas' /metrics (held + in-flight requests): scale from zero, flow control


@dataclass(frozen=True)
class RolePlan:
    """One role of a disaggregated model: its replica bounds and GPUs (its workloads carry its name)."""

    role: Literal["prefill", "decode"]
    gpus_per_replica: int
    replicas_min: int
    replicas_max: int
    autoscaled: bool
    selector: Labels  #: the role's pods, every pool


@dataclass(frozen=True)
class DisaggregationPlan:
    """How a model's prefill and decode pods pair up: what the gateway is told and what the
    NetworkPolicy admits between them."""

    transfer: Literal["nixl", "kv-pool", "mooncake"]
    min_prompt_tokens: int
    prefill_selector: Labels
    decode_selector: Labels
    prefill_port: int  #: the prefill engines' HTTP port
    transfer_port: int | None  #: decode pods reach prefill pods here (NIXL side channel, SGLang bootstrap)
    transfer_port_end: int | None  #: last port of the range (NIXL: one side channel per tensor-parallel rank)
    bootstrap_port: int | None  #: SGLang's --disaggregation-bootstrap-port (told to the gateway)
    short_prompts_on_prefill_pods: bool = True  #: the gateway may run a short prompt on a prefill pod


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
    env: Labels
    secret_ref: str | None
    pvc_claim: str | None  #: weights on a PersistentVolumeClaim (pvc:// sources)
    gpus_per_replica: int
    replicas_min: int
    replicas_max: int
    autoscaled: bool
    workloads: tuple[WorkloadPlan, ...]
    selector: Labels  #: labels selecting the model's serving pods
    labels: Labels  #: labels naming the model on its objects and pods
    routing: dict[str, Any]  #: the model's routing spec as the gateway config spells it
    slo: SloSpec
    adapters: AdapterPlan | None = None
    kv_connector: bool = False  #: engines load the KV pool's connector
    kv_events_port: int | None = None  #: engines publish KV-cache events here (prefix index kv-events)
    engine_priority: bool = False  #: engines schedule by the request priority the gateway sets
    weights: WeightsPlan | None = None
    arch: str | None = None  #: catalogue architecture (explicit, by name, or from the source URI)
    roles: tuple[RolePlan, ...] = ()  #: (prefill, decode) when disaggregated; the model's numbers are then decode's
    disaggregation: DisaggregationPlan | None = None

    def role_workloads(self, role: str) -> tuple[WorkloadPlan, ...]:
        return tuple(w for w in self.workloads if w.role == role)

    def units(self) -> tuple[ScaleUnit, ...]:
        """What scales and costs together: the model, or each role of a disaggregated model."""
        if not self.roles:
            return (ScaleUnit(None, self.gpus_per_replica, self.replicas_min, self.replicas_max, self.autoscaled,
                              self.workloads),)
        return tuple(ScaleUnit(r.role, r.gpus_per_replica, r.replicas_min, r.replicas_max, r.autoscaled,
                               self.role_workloads(r.role)) for r in self.roles)


@dataclass(frozen=True)
class ScaleUnit:
    """A model (``role`` None) or one role of a disaggregated model, with its workloads."""

    role: str | None
    gpus_per_replica: int
    replicas_min: int
    replicas_max: int
    autoscaled: bool
    workloads: tuple[WorkloadPlan, ...]


@dataclass(frozen=True)
class GatewayPlan:
    """The ext_proc router and (standalone) its Envoy, or Envoy Gateway's objects."""

    router: Component
    envoy: Component | None  #: our Envoy (mode standalone); None under Envoy Gateway
    mode: Literal["standalone", "envoy-gateway"]
    replicas: int
    workers: int  #: gateway processes per replica; worker i serves ext_proc on grpc_port + i
    grpc_port: int
    http_port: int
    envoy_port: int
    envoy_admin_port: int
    num_retries: int
    request_timeout_s: float
    max_request_body_bytes: int  #: Envoy's buffer and the gateway's body limit
    gateway_class_name: str
    service_dns: str  #: the router's headless Service, as Envoy resolves it
    metrics_urls: tuple[str, ...]  #: every replica's /metrics (stable StatefulSet names)
    users_secret: str | None
    redis_url: str | None
    redis_password_secret: str | None
    routing_stream_key: str  #: the Redis stream every replica shares routing state on (one per stack)
    routes: tuple[RouteSpec, ...]  #: weighted routes, targets translated to served model names
    tracing: tuple[str, float] | None  #: (OTLP endpoint, sampling ratio) of request spans
    tiers: tuple[tuple[str, int, int, int], ...]  #: (name, rpm, tpm, priority)
    default_tier: str
    proxy_peers: tuple[Peer, ...]  #: the proxies that carry client traffic
    flow_control: FlowControlConfig  #: the gateway's queues, in its own config model (seconds)
    ext_proc_message_timeout_s: float  #: Envoy waits this long for the gateway (longer than a held request)


@dataclass(frozen=True)
class ScalerPlan:
    """The aibrix-scaler Deployment (KPA/APA targets)."""

    component: Component
    metrics_port: int
    targets: tuple[ScaleTarget, ...]


@dataclass(frozen=True)
class OptimizedModel:
    name: str  #: OpenAI name (the gateway's ``model`` label)
    pools: tuple[str, ...]
    gpus_per_replica: int
    min_replicas: int
    max_replicas: int
    slo: dict[str, float]
    arch: str | None


@dataclass(frozen=True)
class OptimizerPool:
    name: str
    accelerator: str
    cost_per_gpu_hour: float
    max_gpus: int | None


@dataclass(frozen=True)
class OptimizerPlan:
    component: Component
    port: int
    metrics_url: str
    models: tuple[OptimizedModel, ...]
    pools: tuple[OptimizerPool, ...]
    gateway_metrics_urls: tuple[str, ...]
    derive_missing_profiles: bool
    solver: str
    interval_s: float
    profiles_config_map: str | None


@dataclass(frozen=True)
class KvPoolPlan:
    component: Component
    port: int
    metrics_port: int
    replicas: int
    memory_per_replica: str
    eviction: str
    block_size_tokens: int
    dns_name: str  #: the headless Service's name clients resolve


@dataclass(frozen=True)
class DiagnosticsPlan:
    component: Component
    pools: tuple[PoolPlan, ...]
    metrics_port: int
    interval_s: float
    node_condition: bool
    taint_on_failure: bool

    @property
    def node_actions(self) -> bool:
        return self.node_condition or self.taint_on_failure


@dataclass(frozen=True)
class ObservabilityPlan:
    service_monitors: bool
    prometheus_rules: bool
    scrape_interval: str
    http_metrics: frozenset[str]  #: components whose /metrics shares the http port (by name)
    dashboards: bool = False  #: Grafana dashboards as sidecar-labelled ConfigMaps


@dataclass(frozen=True)
class PdLink:
    """Decode pods of a disaggregated model may reach its prefill pods on these ports."""

    name: str  #: the NetworkPolicy's name
    prefill_selector: Labels
    decode_peer: Peer
    port: int
    end_port: int | None  #: the last port of a range; None = one port


@dataclass(frozen=True)
class NetworkPlan:
    """Who may reach whom: NetworkPolicy peers per destination, decided once. Every pod of the
    stack is denied by default (``stack_selector``); each destination admits exactly these."""

    stack_selector: Labels  #: every pod of the stack (the default-deny policy's target)
    engine_selector: Labels  #: every engine pod of the stack
    scrapers: tuple[Peer, ...]  #: who may scrape metrics ports
    to_engines: tuple[Peer, ...]  #: on the engine API ports (vLLM serves /metrics there too)
    to_envoy: tuple[Peer, ...]  #: our Envoy's listener (empty tuple = any source)
    to_gateway_grpc: tuple[Peer, ...]
    to_gateway_http: tuple[Peer, ...]
    to_optimizer: tuple[Peer, ...]
    to_kv_pool: tuple[Peer, ...]
    to_engine_kv_events: tuple[Peer, ...] = ()  #: the gateway, on the engines' KV-event port (kv-events models)
    pd_links: tuple[PdLink, ...] = ()  #: decode -> prefill pods of disaggregated models (NIXL, SGLang bootstrap)


@dataclass(frozen=True)
class KubeFeatures:
    """API behaviour the target Kubernetes version has on by default."""

    native_sidecars: bool  #: initContainers with restartPolicy: Always (1.29+)
    unhealthy_pod_eviction_policy: bool  #: PDB spec.unhealthyPodEvictionPolicy (1.27+)
    validating_admission_policy: bool  #: admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (1.30+)


@dataclass(frozen=True)
class Plan:
    """The whole stack, decided."""

    stack_name: str
    namespace: str
    create_namespace: bool
    extra_labels: Labels
    kube_version: tuple[int, int]
    features: KubeFeatures
    pull_policy: str
    pull_secret: str | None
    runtime_image: str  #: our runtime image for engine pods' init containers (images.downloader)
    prometheus_url: str
    pools: tuple[PoolPlan, ...]
    models: tuple[ModelPlan, ...]
    network: NetworkPlan
    gateway: GatewayPlan | None = None
    scale_targets: tuple[ScaleTarget, ...] = ()  #: every autoscaled workload (HPA, KEDA, KPA, APA)
    scaler: ScalerPlan | None = None
    optimizer: OptimizerPlan | None = None
    kv_pool: KvPoolPlan | None = None
    diagnostics: DiagnosticsPlan | None = None
    observability: ObservabilityPlan | None = None
    warnings: tuple[str, ...] = ()  #: compiles, but will not work as the user may expect (the CLI prints them)
