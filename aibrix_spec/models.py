"""``spec.models[]``: one served base model and everything that shapes its deployment.

A model runs ``replicas`` copies of an engine (vLLM or SGLang); each replica uses
``gpusPerReplica = parallelism.tensor x parallelism.pipeline`` GPUs from one of its
placement pools. When a replica needs more GPUs than one node of its pool holds, the
replica spans nodes (KubeRay). ``autoscaling`` names the policy that moves the replica
count within [replicas.min, replicas.max]; with policy ``none`` the count is fixed.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ._base import SpecModel
from ._types import (
    DnsLabel,
    Duration,
    NoSecretStr,
    Quantity,
    SecretName,
    ServedModelName,
    spec_error,
)
from .components.gateway import PdTransfer
from .routing import RoutingSpec

__all__ = [
    "AUTOSCALING_METRICS",
    "AutoscalingMetric",
    "AdapterSpec",
    "AutoscalingSpec",
    "DisaggregationSpec",
    "EngineSpec",
    "LoraSpec",
    "ModelKvCacheSpec",
    "ModelSpec",
    "ParallelismSpec",
    "PdRoleSpec",
    "PdTransfer",
    "PlacementSpec",
    "ReplicasSpec",
    "SloSpec",
    "SourceSpec",
]

_URI_SCHEMES = ("hf://", "s3://", "gs://", "pvc://", "oci://", "https://")
_URI_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f\"'`\\]")


class AutoscalingMetric(SpecModel):
    """What an autoscaling metric name means (a row of :data:`AUTOSCALING_METRICS`)."""

    prometheus_name: str = Field(description="Metric name as the source exposes it.")
    source: Literal["engine", "optimizer"] = Field(description="Who exposes the metric.")
    aggregation: Literal["per-pod", "total"] = Field(description="per-pod values are summed; total is one value.")
    max_target: float | None = Field(description="Largest meaningful target (1.0 for ratios); None = unbounded.")
    sum_with: tuple[str, ...] = Field(
        (), description="More metric names added to prometheus_name per pod (concurrency = running + waiting)."
    )

    @property
    def names(self) -> tuple[str, ...]:
        """Every metric name that is summed into the value."""
        return (self.prometheus_name, *self.sum_with)


#: Metric names ``models[].autoscaling.metric`` accepts, and what each one reads.
AUTOSCALING_METRICS: dict[str, AutoscalingMetric] = {
    "kv_cache_usage": AutoscalingMetric(
        prometheus_name="vllm:kv_cache_usage_perc", source="engine", aggregation="per-pod", max_target=1.0
    ),
    "num_requests_running": AutoscalingMetric(
        prometheus_name="vllm:num_requests_running", source="engine", aggregation="per-pod", max_target=None
    ),
    "num_requests_waiting": AutoscalingMetric(
        prometheus_name="vllm:num_requests_waiting", source="engine", aggregation="per-pod", max_target=None
    ),
    # Knative's concurrency: requests in flight on a pod, queued ones included.
    "concurrency": AutoscalingMetric(
        prometheus_name="vllm:num_requests_running",
        sum_with=("vllm:num_requests_waiting",),
        source="engine",
        aggregation="per-pod",
        max_target=None,
    ),
    "optimizer_desired_replicas": AutoscalingMetric(
        prometheus_name="aibrix_optimizer_desired_replicas", source="optimizer", aggregation="total", max_target=1.0
    ),
}


class SourceSpec(SpecModel):
    """Where weights come from."""

    uri: NoSecretStr = Field(
        description="hf://org/name, s3://bucket/path, gs://bucket/path, pvc://claim/path, oci://image or https://...",
    )
    secret_ref: SecretName | None = Field(
        None,
        description=(
            "Name of a Secret whose keys become the engine's (and the downloader's) environment: HF_TOKEN for hf://, "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for s3:// and gs:// (HMAC keys), key token (a bearer token) "
            "for https://, a kubernetes.io/dockerconfigjson Secret (a pull secret) for oci://; never put a token in the URI."
        ),
    )
    endpoint: Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")] | None = Field(
        None,
        description=(
            "S3-compatible endpoint for s3:// (MinIO, SeaweedFS, Ceph...); gs:// defaults to "
            "https://storage.googleapis.com. Scheme, host and port only: credentials come from secretRef."
        ),
    )
    loader: Literal["auto", "stream", "download"] = Field(
        "auto",
        description=(
            "How weights reach the engine: stream (vLLM's Run:ai Model Streamer reads s3:// and gs:// straight into "
            "GPU memory), download (an init container runs aibrix-runtime download into the model cache), or auto: "
            "stream for vLLM from s3:// and gs:// when no spec.modelCache is set, download for other downloaded sources."
        ),
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(_URI_SCHEMES):
            raise spec_error(
                f'unsupported source URI "{value if len(value) <= 60 else value[:57] + "..."}"',
                expected="a URI starting with " + ", ".join(_URI_SCHEMES),
                hint="for a Hugging Face model write hf://org/name",
            )
        if _URI_UNSAFE.search(value):
            raise spec_error(
                "the URI holds a space, quote, backslash or control character",
                expected="a URI without spaces, quotes, backslashes or control characters",
                hint="percent-encode the character (a space is %20)",
            )
        path = value.partition("://")[2].partition("?")[0]
        if any(part in ("..", ".") for part in path.split("/")):
            raise spec_error(
                "the URI's path holds a . or .. segment",
                expected="a path that stays inside its bucket, repository or volume",
                hint="write the path from the root of the source without . or ..",
            )
        return value


class EngineResources(SpecModel):
    """CPU and memory the engine container requests (GPUs come from the placement)."""

    cpu: Quantity | None = Field(None, description="CPU request; empty = 2 + 2 per GPU of the pod.")
    memory: Quantity | None = Field(
        None, description="Memory request; empty = 8Gi + half the GPU memory of the pod (weights stage through host memory)."
    )


class EngineSpec(SpecModel):
    """The inference engine and the flags the compiler derives for it."""

    type: Literal["vllm", "sglang"] = Field("vllm", description="vllm or sglang.")
    max_model_len: Annotated[int, Field(ge=16)] | None = Field(
        None, description="Longest context (prompt + output tokens); empty = the model's own maximum."
    )
    prefix_caching: bool = Field(True, description="Reuse the KV cache of shared prompt prefixes.")
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = Field(
        0.9, description="Fraction of GPU memory the engine may use for weights and KV cache."
    )
    dtype: Literal["auto", "bfloat16", "float16"] = Field("auto", description="Weight and activation dtype.")
    port: Annotated[int, Field(ge=1024, le=65535)] = Field(8000, description="Port of the OpenAI API and /metrics.")
    args: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description=(
            "Extra engine flags in camelCase (maxNumSeqs: 256 -> --max-num-seqs 256; true -> a bare flag; "
            "false -> --no-flag). Flags the compiler derives from other fields are refused."
        ),
    )
    env: dict[str, NoSecretStr] = Field(
        default_factory=dict,
        description=(
            "Extra environment variables (no secrets: names such as *_TOKEN, *_PASSWORD, *_SECRET or *API_KEY "
            "are refused; put those in the Secret named by source.secretRef)."
        ),
    )
    resources: EngineResources = Field(
        default_factory=EngineResources, description="CPU and memory requests of the engine container."
    )


class PlacementSpec(SpecModel):
    """Which pools the replicas may use."""

    pools: Annotated[list[DnsLabel], Field(min_length=1)] = Field(
        description="gpuPools names; several pools make the model heterogeneous (one Deployment per pool)."
    )
    gpus_per_replica: Annotated[int, Field(ge=1, le=512)] | None = Field(
        None, description="GPUs one replica uses; defaults to parallelism.tensor x parallelism.pipeline."
    )


class ParallelismSpec(SpecModel):
    """How one replica splits the model across GPUs."""

    tensor: Annotated[int, Field(ge=1, le=64)] = Field(1, description="Tensor-parallel size (within a node).")
    pipeline: Annotated[int, Field(ge=1, le=64)] = Field(1, description="Pipeline-parallel stages.")


class ReplicasSpec(SpecModel):
    """The replica range; without autoscaling min is the fixed count."""

    min: Annotated[int, Field(ge=0, le=10_000)] = Field(1, description="Fewest replicas (the count when not autoscaled).")
    max: Annotated[int, Field(ge=0, le=10_000)] | None = Field(
        None, description="Most replicas; defaults to min; must be >= min."
    )


class AutoscalingSpec(SpecModel):
    """Which algorithm moves the replica count, on which metric."""

    policy: Literal["none", "hpa", "kpa", "apa"] = Field(
        "none", description="none (fixed count), hpa (Kubernetes HPA or KEDA), kpa (Knative-style), apa (AIBrix)."
    )
    metric: str = Field(
        "num_requests_running",
        description="One of: " + ", ".join(AUTOSCALING_METRICS) + ".",
    )
    target: Annotated[float, Field(gt=0)] = Field(
        8.0, description="What one replica should carry, in the metric's unit (a ratio for kv_cache_usage)."
    )
    use_keda: bool = Field(False, description="With policy hpa, emit a KEDA ScaledObject instead of a bare HPA.")
    scale_to_zero_grace: Duration = Field(
        "60s",
        description=(
            "With replicas.min 0: how long a model must have no demand (nothing held at the gateway, nothing in "
            "flight) before it goes to zero replicas. Ignored when replicas.min is 1 or more."
        ),
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in AUTOSCALING_METRICS:
            raise spec_error(
                f'unknown autoscaling metric "{value}"',
                expected="one of: " + ", ".join(AUTOSCALING_METRICS),
                got=value,
                choices=tuple(AUTOSCALING_METRICS),
            )
        return value


class SloSpec(SpecModel):
    """Latency objectives (the optimizer sizes pools to meet them)."""

    ttft_p99_ms: Annotated[float, Field(gt=0)] | None = Field(None, description="99th percentile time to first token.")
    tpot_p99_ms: Annotated[float, Field(gt=0)] | None = Field(None, description="99th percentile time per output token.")


class ModelKvCacheSpec(SpecModel):
    """Whether this model's engines use the shared KV-cache pool (spec.kvCache)."""

    enabled: bool = Field(False, description="Load the KV connector so engines share prefix blocks through the pool.")


class LoraSpec(SpecModel):
    """Engine LoRA limits (used when the model has adapters)."""

    max_loras: Annotated[int, Field(ge=1, le=256)] | None = Field(
        None, description="Adapters resident per engine at once; defaults to the number of adapters (at most 8)."
    )
    max_rank: Literal[8, 16, 32, 64, 128, 256] = Field(16, description="Largest LoRA rank any adapter uses.")


class AdapterSpec(SpecModel):
    """A LoRA adapter served on top of the base model under its own name."""

    name: DnsLabel = Field(description="The OpenAI model name clients use for this adapter.")
    source: SourceSpec = Field(description="Where the adapter's weights come from.")
    replicas: Annotated[int, Field(ge=1)] | None = Field(
        None, description="How many engine pods load the adapter; empty = every pod."
    )


class PdRoleSpec(SpecModel):
    """One role of a disaggregated model; every field left out is the model's own."""

    replicas: ReplicasSpec | None = Field(None, description="Replica range of this role; empty = the model's replicas.")
    parallelism: ParallelismSpec | None = Field(
        None, description="Tensor and pipeline parallelism of this role; empty = the model's parallelism."
    )
    placement: PlacementSpec | None = Field(None, description="Pools this role runs on; empty = the model's placement.")
    autoscaling: AutoscalingSpec | None = Field(
        None, description="Autoscaling of this role (its own HPA/KPA/APA/KEDA object); empty = the model's autoscaling."
    )


class DisaggregationSpec(SpecModel):
    """Prefill/decode disaggregation: prompts are processed on prefill pods, tokens generated on
    decode pods, the KV cache handed over by ``transfer``; the gateway pairs them per request."""

    transfer: PdTransfer = Field(
        description=(
            "How the KV cache moves from a prefill pod to a decode pod: vLLM takes nixl (NixlConnector, GPU "
            "fabrics) or kv-pool (the project's KV-cache pool, spec.kvCache); SGLang takes mooncake or nixl "
            "(its --disaggregation-transfer-backend)."
        )
    )
    min_prompt_tokens: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        512, description="Prompts shorter than this skip the prefill pods and are decoded in place."
    )
    short_prompts_on_prefill_pods: bool | None = Field(
        None,
        description="vLLM: a short prompt may also run whole on a prefill pod less loaded than every decode pod, "
        "so short traffic uses the prefill GPUs too (its TTFT may then meet a long prefill; docs/routing.md). "
        "Default: on where a prefill pod decodes at least as fast as every decode pod (GPU memory bandwidth "
        "times tensor parallelism), off otherwise. SGLang: short prompts stay on decode pods.",
    )
    prefill: PdRoleSpec = Field(description="The prefill pods (prompt processing, compute-bound).")
    decode: PdRoleSpec = Field(description="The decode pods (token generation, memory-bandwidth-bound).")


class ModelSpec(SpecModel):
    """One served base model."""

    name: DnsLabel = Field(description="Model name: Service, labels, and the OpenAI model name by default.")
    arch: str | None = Field(
        None,
        description=(
            "Catalogue architecture of the weights (layers, hidden size, KV heads), for the optimizer's derived "
            "profiles; empty = the model's name or served name when the catalogue knows it, else inferred from "
            "a well-known source URI."
        ),
    )
    served_model_name: ServedModelName | None = Field(
        None,
        description=(
            "The OpenAI model name when it differs from name (e.g. meta-llama/Llama-3-8B): letters, digits "
            "and . _ - / :, at most 128 characters."
        ),
    )
    source: SourceSpec = Field(description="Where the weights come from.")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="Engine type and flags.")
    placement: PlacementSpec = Field(description="Pools the replicas run on.")
    parallelism: ParallelismSpec = Field(default_factory=ParallelismSpec, description="Tensor and pipeline parallelism.")
    replicas: ReplicasSpec = Field(default_factory=ReplicasSpec, description="Replica range.")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Autoscaling policy.")
    slo: SloSpec = Field(default_factory=SloSpec, description="Latency objectives.")
    routing: RoutingSpec = Field(default_factory=RoutingSpec, description="Gateway routing policy for this model.")
    kv_cache: ModelKvCacheSpec = Field(default_factory=ModelKvCacheSpec, description="Use of the shared KV-cache pool.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="Engine LoRA limits.")
    adapters: list[AdapterSpec] = Field(default_factory=list, description="LoRA adapters served on this model.")
    disaggregation: DisaggregationSpec | None = Field(
        None,
        description=(
            "Prefill/decode disaggregation: separate prefill and decode pods, paired by the gateway; absent = "
            "every pod serves whole requests."
        ),
    )
