"""The gateway's configuration file: what ``aibrix-gateway --config FILE`` loads.

The compiler writes this file into the gateway's ConfigMap; locally it is hand-written.
It says which models the gateway serves (and how to find their pods), each model's routing
policy (:class:`aibrix_spec.routing.RoutingSpec`), where API keys and tiers come from, where
shared rate-limit counters live (Redis) and how often engine metrics are scraped.

Example (YAML, camelCase)::

    discovery: {mode: static, endpointsFile: endpoints.yaml}
    models:
      - name: llama-3-8b
        selector: {model.aibrix.ai/name: llama-3-8b}
        port: 8000
        routing: {policy: "prefix-cache-aware:2,least-request"}
        adapters: [sql-lora]
        engine: vllm
    rateLimits:
      usersFile: /etc/aibrix/users/users.yaml
      tiers: {free: {rpm: 60, tpm: 20000}, gold: {rpm: 600, tpm: 200000}}
      defaultTier: free
      redisUrl: redis://redis:6379/0
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .._base import SpecModel
from ..engine_metrics import EngineName
from ..routing import ROUTING_POLICY_HEADER, RoutingSpec
from ..sections import SaturationSpec, TierSpec  # the stack's models: the compiler copies them across unchanged

__all__ = [
    "EXT_PROC_REQUEST_HEADERS",
    "EXT_PROC_RESPONSE_HEADERS",
    "PRIORITY_HEADER",
    "DisaggregationConfig",
    "DiscoverySpec",
    "FlowControlConfig",
    "GatewayConfig",
    "GatewayModelSpec",
    "ListenSpec",
    "RateLimitSpec",
    "ResponseSpec",
    "RoutingStateSpec",
    "SaturationSpec",
    "TracingSpec",
    "ScrapeSpec",
    "TierSpec",
    "ext_proc_headers",
    "needs_request_ids",
]

#: The request header a client may lower its priority with (``flowControl.allowPriorityHeader``).
PRIORITY_HEADER = "x-request-priority"
#: Every request header the gateway reads from Envoy's ext_proc messages, besides the session
#: headers a config names (:func:`ext_proc_headers`). Envoy forwards these and no others
#: (``forward_rules``): a real client sends many more (an OpenAI SDK a dozen ``x-stainless-*``),
#: and each costs Envoy and the gateway on every request (docs/gateway.md, "Headers Envoy forwards").
EXT_PROC_REQUEST_HEADERS = (
    ":path", ":method", "authorization", "x-request-id", "traceparent", "tracestate",
    PRIORITY_HEADER, ROUTING_POLICY_HEADER, "x-session-id",
)
#: Every response header the gateway reads when it processes a response.
EXT_PROC_RESPONSE_HEADERS = (":status", "content-type", "x-envoy-attempt-count", "x-envoy-upstream-service-time")

_Port = Annotated[int, Field(ge=0, le=65535)]


class ListenSpec(SpecModel):
    """Where the gateway listens (port 0 picks a free port; tests use it)."""

    host: str = Field("0.0.0.0", description="Address both servers bind to.")
    grpc_port: _Port = Field(50051, description="Port of the Envoy ext_proc gRPC service (plus gRPC health).")
    http_port: _Port = Field(8080, description="Port of /metrics, /healthz and /v1/models.")
    grpc_server: Literal["builtin", "grpcio"] = Field(
        "builtin",
        description="The gRPC server on grpcPort. builtin: the gateway's own HTTP/2 server (about a fifth of "
                    "grpcio's CPU per ext_proc stream behind Envoy, see docs/gateway.md); grpcio: grpc.aio, "
                    "kept as a fallback.",
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto",
        description="The event loop every gateway process runs on. uvloop (libuv, in C) costs less CPU per "
                    "request than asyncio's own (docs/gateway.md); auto: uvloop when it is installed (the gateway "
                    "extra installs it), else asyncio.",
    )


class DiscoverySpec(SpecModel):
    """How the gateway finds the engine pods behind each model."""

    mode: Literal["kubernetes", "static"] = Field(
        "kubernetes",
        description="kubernetes: list and watch pods by each model's selector; static: read endpointsFile.",
    )
    namespace: str = Field("default", description="Namespace whose pods are watched (kubernetes mode).")
    endpoints_file: str | None = Field(
        None, description="YAML file listing endpoints (static mode); re-read when it changes."
    )
    poll_interval_s: Annotated[float, Field(gt=0, le=60)] = Field(
        1.0, description="How often the static endpoints file is checked for changes."
    )

    @model_validator(mode="after")
    def _file_for_static(self) -> DiscoverySpec:
        if self.mode == "static" and not self.endpoints_file:
            raise ValueError("discovery.mode is static but discovery.endpointsFile is not set")
        return self


#: How a prefill pod hands its KV cache to a decode pod (each name is the engine's own):
#: vLLM: ``nixl`` (NixlConnector, the decode pod pulls the blocks), ``kv-pool`` (the project's
#: pool: the prefill pod writes, the decode pod reads); SGLang: ``mooncake`` or ``nixl``
#: (``--disaggregation-transfer-backend``).
PdTransfer = Literal["nixl", "kv-pool", "mooncake"]


class DisaggregationConfig(SpecModel):
    """Prefill/decode disaggregation of one model (docs/routing.md, "Prefill/decode").

    The model's ``selector`` finds its *decode* pods; ``prefillSelector`` finds its prefill
    pods. A prompt of at least ``minPromptTokens`` goes to a prefill pod first (one output
    token, the transfer's parameters), then to a decode pod with what the prefill returned; a
    shorter prompt, or any prompt when no prefill pod is ready or the prefill call fails, is
    decoded in place on a decode pod.
    """

    prefill_selector: dict[str, str] = Field(
        default_factory=dict, description="Pod labels that select this model's prefill pods (kubernetes mode)."
    )
    prefill_port: _Port = Field(8000, description="The prefill engines' HTTP port on each pod (kubernetes mode).")
    transfer: PdTransfer = Field(description="How the KV cache moves from the prefill pod to the decode pod.")
    min_prompt_tokens: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        512, description="Prompts shorter than this skip the prefill pods (decoded in place)."
    )
    prefill_routing: RoutingSpec = Field(
        default_factory=lambda: RoutingSpec(policy="prefix-cache-aware,least-request"),
        description="How a prefill pod is picked (the model's own routing picks the decode pod).",
    )
    prefill_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        60.0, description="Longest wait for a prefill pod's answer; then the request is decoded in place."
    )
    short_prompts_on_prefill_pods: bool = Field(
        True,
        description="vLLM: a short prompt may also run whole on a prefill pod (they are complete engines): the "
        "model's routing picks among decode and prefill pods, so short traffic uses every GPU of the model. "
        "SGLang prefill servers cannot decode: ignored there.",
    )
    bootstrap_port: _Port | None = Field(
        None,
        description="SGLang only: the prefill pods' disaggregation bootstrap port (--disaggregation-bootstrap-port), "
        "sent to both sides of the pair.",
    )


class GatewayModelSpec(SpecModel):
    """One model the gateway serves."""

    name: str = Field(..., min_length=1, description='The OpenAI "model" name requests use.')
    selector: dict[str, str] = Field(
        default_factory=dict,
        description="Pod labels that select this model's engine pods (kubernetes mode).",
    )
    port: _Port = Field(8000, description="The engines' HTTP port on each pod (kubernetes mode).")
    routing: RoutingSpec = Field(default_factory=RoutingSpec, description="How a pod is picked for this model.")
    adapters: list[str] = Field(
        default_factory=list,
        description="LoRA adapter names served on top of this model; requests may name them as the model.",
    )
    engine: EngineName | None = Field(
        None,
        description="The engine behind the pods (vllm or sglang): which metric dialect the scraper reads "
        "(aibrix_spec.engine_metrics). Absent: detected from each page's metric-name prefix, vllm when none is known.",
    )
    kv_events_port: _Port | None = Field(
        None,
        description="Port of each engine pod's KV-event publisher (ZMQ PUB); the gateway subscribes to it when "
        "routing.parameters.prefixCacheAware.index is kv-events.",
    )

    tokenizer_file: str | None = Field(
        None,
        description="The model's tokenizer.json: completions prompts are then tokenized exactly as the engine does "
        "(needs the tokenizers package, extra tokenizer), so prefix hashes match the engines' KV events "
        "(index kv-events). Unset: the approximate tokenizer, which never matches a real engine's events.",
    )

    engine_priority: bool = Field(
        False,
        description="Set each request's priority field for the engine (flow control on; the engines run vLLM's "
        "--scheduling-policy priority): higher tiers first, then users under their fair share.",
    )
    disaggregation: DisaggregationConfig | None = Field(
        None, description="Prefill/decode disaggregation; absent: every pod of the model serves whole requests."
    )

    @model_validator(mode="after")
    def _events_port_for_kv_events(self) -> GatewayModelSpec:
        if self.routing.parameters.prefix_cache_aware.index == "kv-events" and self.kv_events_port is None:
            raise ValueError(f'model "{self.name}": routing.parameters.prefixCacheAware.index is kv-events but '
                             "kvEventsPort is not set; set the port of the engines' KV-event publisher")
        return self


class RateLimitSpec(SpecModel):
    """API keys, tiers and where counters live."""

    users_file: str | None = Field(
        None,
        description=(
            "YAML file (mounted from a Secret) mapping API keys to users and tiers. "
            "When unset, requests need no key and are limited per client as one anonymous user."
        ),
    )
    tiers: dict[str, TierSpec] = Field(default_factory=dict, description="Tier name -> budgets.")
    default_tier: str | None = Field(None, description="Tier of users that name none (and of anonymous traffic).")
    redis_url: str | None = Field(
        None, description="redis:// URL shared by all gateway replicas; counters stay in memory when unset."
    )
    redis_password_file: str | None = Field(
        None, description="File holding the Redis password (mounted from a Secret); the URL itself carries none."
    )
    window_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        60.0, description="Length of the rate-limit window (60 s makes rpm/tpm per minute)."
    )
    redis_timeout_ms: Annotated[float, Field(gt=0, le=10_000)] = Field(
        50.0,
        description="Deadline of one Redis round trip (a request makes at most one); a late answer counts as a failure.",
    )
    redis_breaker_failures: Annotated[int, Field(ge=1, le=1000)] = Field(
        3, description="Consecutive Redis failures that open the circuit: limits are then skipped (fail open)."
    )
    redis_breaker_cooldown_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        5.0, description="How long the circuit stays open before one request probes Redis again (half-open)."
    )

    @model_validator(mode="after")
    def _default_tier_exists(self) -> RateLimitSpec:
        if self.default_tier is not None and self.default_tier not in self.tiers:
            known = ", ".join(sorted(self.tiers)) or "(none defined)"
            raise ValueError(f'rateLimits.defaultTier "{self.default_tier}" is not a tier; tiers: {known}')
        return self


class ScrapeSpec(SpecModel):
    """How engine metrics are collected."""

    interval_s: Annotated[float, Field(gt=0, le=60)] = Field(0.5, description="Seconds between scrapes of each endpoint.")
    timeout_s: Annotated[float, Field(gt=0, le=30)] = Field(1.0, description="Timeout of one scrape.")
    staleness_s: Annotated[float, Field(gt=0, le=300)] = Field(
        3.0, description="Metrics older than this are treated as unknown by the routing policies."
    )


class TracingSpec(SpecModel):
    """OpenTelemetry spans of routed requests."""

    otlp_endpoint: str = Field(..., pattern=r"^https?://", description="OTLP/gRPC collector, e.g. http://otel-collector:4317.")
    sampling_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.01, description="Share of new traces kept (a client's sampled traceparent is always followed)."
    )
    service_name: str = Field("aibrix-gateway", min_length=1, description="service.name of the spans.")


class RoutingStateSpec(SpecModel):
    """Where the prefix indexes and session tables are shared with other gateway processes."""

    redis_url: str | None = Field(
        None, description="Redis shared by every replica (a bounded stream of batched changes); absent: not shared "
        "across pods.", pattern=r"^rediss?://",
    )
    redis_password_file: str | None = Field(None, description="File holding the Redis password (a mounted Secret).")
    hub_socket: str | None = Field(
        None, description="Unix socket of the pod's hub shared by its workers (set by aibrix-gateway --workers; "
        "used when redisUrl is absent).",
    )
    stream_key: str = Field("aibrix:routing-state", min_length=1, description="Redis stream of this stack's batches.")
    stream_max_len: Annotated[int, Field(ge=10, le=1_000_000)] = Field(
        2000, description="Batches the stream keeps (Redis trims older ones): bounds Redis memory and the warm start."
    )
    flush_interval_ms: Annotated[float, Field(ge=0, le=1000)] = Field(
        5.0, description="Changes gather this long into one batch (one write per interval while busy)."
    )
    max_blocks_per_event: Annotated[int, Field(ge=1, le=100_000)] = Field(
        256, description="Leading prefix blocks sent per routed request (deeper matches stay local)."
    )
    warm_start_batches: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        500, description="Newest batches a starting process replays from Redis."
    )


class FlowControlConfig(SpecModel):
    """Per-model queues in the gateway: hold a request until an engine has room (docs/gateway.md)."""

    enabled: bool = Field(False, description="Hold requests in per-model queues instead of overloading engines.")
    queue_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        30.0,
        description=(
            "Longest a request waits in the queue: then 429 (engines exist but stayed full) or 503 with "
            "Retry-After (the model had no ready engine: a cold start that did not finish in time)."
        ),
    )
    max_queue_per_model: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        1000, description="Most requests held per model; beyond it the lowest priority is shed with 429."
    )
    saturation: SaturationSpec = Field(default_factory=SaturationSpec, description="When an engine is full.")
    fairness: Literal["round-robin", "virtual-time"] = Field(
        "virtual-time",
        description=(
            "Order between users within a priority band: virtual-time (start-time fair queueing weighted by "
            "each request's token budget, prompt + max_tokens) or round-robin (one request per user in turn)."
        ),
    )
    allow_priority_header: bool = Field(
        False,
        description=(
            "Let clients lower (never raise above their tier's) priority with the x-request-priority header."
        ),
    )
    tick_s: Annotated[float, Field(gt=0, le=5)] = Field(
        0.05, description="How often held requests are re-checked when no request finished (new scrapes, new pods)."
    )


class ResponseSpec(SpecModel):
    """Which responses the gateway reads (each read response costs Envoy two or more ext_proc messages).

    Envoy skips the response phases unless the gateway asks for them per request: for users
    whose tier has a tpm budget (their tokens must be counted) and for a time-spaced sample of
    the rest, which feeds the workload histogram (docs/gateway.md, "Which responses the gateway reads").
    """

    process_all: bool = Field(
        False,
        description=(
            "Read every response (status, retries, usage, time to first byte), as before the sampling; "
            "costs two or more extra ext_proc messages per request."
        ),
    )
    workload_samples_per_s: Annotated[float, Field(ge=0, le=100_000)] = Field(
        2.0,
        description=(
            "Responses read per second per worker for the token-bucket histogram, evenly spaced in time; each "
            "sample stands for the unread requests of its model since the previous one. 0 = no histogram "
            "from users without a tpm budget."
        ),
    )


class GatewayConfig(SpecModel):
    """The whole gateway configuration file."""

    listen: ListenSpec = Field(default_factory=ListenSpec, description="Ports.")
    discovery: DiscoverySpec = Field(default_factory=DiscoverySpec, description="Pod discovery.")
    models: list[GatewayModelSpec] = Field(..., min_length=1, description="Models served.")
    rate_limits: RateLimitSpec = Field(default_factory=RateLimitSpec, description="Auth and rate limits.")
    scrape: ScrapeSpec = Field(default_factory=ScrapeSpec, description="Engine metric scraping.")
    tracing: TracingSpec | None = Field(None, description="Request spans over OTLP; absent: none.")
    routes_file: str | None = Field(
        None, description="YAML file of weighted routes ({routes: [...]}, aibrix_spec.traffic.RoutesFile), re-read "
        "while the gateway runs: a weight change takes effect without a restart.",
    )
    routing_state: RoutingStateSpec = Field(
        default_factory=RoutingStateSpec, description="Sharing of prefix indexes and session tables between processes."
    )
    fallbacks: Annotated[int, Field(ge=0, le=10)] = Field(
        2,
        description=(
            "Next-best endpoints named in x-gateway-destination-fallback-1..N, which Envoy's retries use "
            "when the chosen one fails to connect or resets; match the Envoy bootstrap's numRetries."
        ),
    )
    flow_control: FlowControlConfig = Field(
        default_factory=FlowControlConfig, description="Per-model queues, priorities and fairness (off by default)."
    )
    responses: ResponseSpec = Field(default_factory=ResponseSpec, description="Which responses the gateway reads.")
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        1,
        description=(
            "Gateway processes in this pod: worker i serves ext_proc on listen.grpcPort + i (Envoy round-robins "
            "streams over them); the supervisor serves the pod's one /metrics page on listen.httpPort."
        ),
    )
    seed: int = Field(0, description="Seed of the routing policies' random choices (reproducible runs).")
    max_request_body_bytes: Annotated[int, Field(ge=64 * 1024, le=1 << 30)] = Field(
        8 * 1024 * 1024,
        description=(
            "Largest request body (bytes) answered normally; larger ones get a 413. Match Envoy's buffer "
            "(per_connection_buffer_limit_bytes): the gRPC receive limit is set this plus 1 MiB for headers."
        ),
    )

    @model_validator(mode="after")
    def _names_unique(self) -> GatewayConfig:
        seen: dict[str, str] = {}
        for model in self.models:
            for name, what in [(model.name, "model")] + [(a, f"adapter of {model.name}") for a in model.adapters]:
                if name in seen:
                    raise ValueError(f'"{name}" is declared twice (as {seen[name]} and as {what}); names must be unique')
                seen[name] = what
        return self


def needs_request_ids(config: GatewayConfig) -> bool:
    """Whether Envoy must give every request an ``x-request-id`` for this gateway: only a
    disaggregated model uses one (its prefill call and the decode request carry the same id,
    as vLLM's own prefill/decode proxy sends them). Nothing else in the stack reads it, and
    generating a UUID per request is a measurable part of Envoy's cost (docs/gateway.md)."""
    return any(model.disaggregation is not None for model in config.models)


def ext_proc_headers(config: GatewayConfig | None = None, session_headers: Iterable[str] = ()) -> tuple[str, ...]:
    """The header names Envoy must forward to a gateway running ``config``: the fixed ones, each
    model's session-affinity header (its prefill routing's too) and ``session_headers`` (the
    routes file's, which is reloaded without a restart and so is passed separately). Sorted,
    lower-case, each once. Without a config: the fixed ones."""
    names = {*EXT_PROC_REQUEST_HEADERS, *EXT_PROC_RESPONSE_HEADERS, *(h.lower() for h in session_headers)}
    for model in config.models if config is not None else ():
        names.add(model.routing.parameters.session_affinity.header)
        if model.disaggregation is not None:
            names.add(model.disaggregation.prefill_routing.parameters.session_affinity.header)
    return tuple(sorted(names))
