"""The root of the API: ``apiVersion: aibrix.ai/v1alpha1``, ``kind: InferenceStack``.

Field-level rules live on the models; rules that relate several fields (references
between sections, uniqueness, fitting parallelism into a pool) are checked by the
compiler's validate pass, which knows where each value sits in the file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ._base import SpecModel
from ._types import DnsLabel, NoSecretStr
from .models import ModelSpec
from .pools import GpuPool
from .sections import (
    DiagnosticsSpec,
    GatewaySpec,
    ImagesSpec,
    KvCachePoolSpec,
    ModelCacheSpec,
    NetworkSpec,
    ObservabilitySpec,
    OptimizerSpec,
)
from .traffic import RouteSpec

__all__ = ["API_VERSION", "DEFAULT_PROMETHEUS_URL", "KIND", "InferenceStack", "InferenceStackSpec", "StackMetadata"]

API_VERSION = "aibrix.ai/v1alpha1"
KIND = "InferenceStack"

#: The Prometheus Operator's governing Service for a Prometheus in namespace "monitoring".
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
#: http(s)://host[:port][/path], no user:password@ (credentials never go into a stack file).
PROMETHEUS_URL_PATTERN = r"^https?://[^\s/@:]+(:[0-9]{1,5})?(/[^\s@]*)?$"


class StackMetadata(SpecModel):
    """Identity of the stack."""

    name: DnsLabel = Field(description="Stack name: the app.kubernetes.io/instance label of every object.")
    namespace: DnsLabel | None = Field(
        None, description="Namespace of every object; empty = the --namespace option (ArgoCD's app namespace)."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels added to every object.")


class InferenceStackSpec(SpecModel):
    """Everything one environment serves."""

    create_namespace: bool = Field(False, description="Emit the Namespace object too.")
    gpu_pools: Annotated[list[GpuPool], Field(min_length=1)] = Field(description="GPU node pools.")
    models: Annotated[list[ModelSpec], Field(min_length=1)] = Field(description="Served models.")
    gateway: GatewaySpec | None = Field(None, description="The LLM gateway; absent = none.")
    routes: list[RouteSpec] = Field(
        default_factory=list,
        description="Weighted traffic splits: an OpenAI model name served by several models (needs the gateway; "
        "weight changes take effect without restarting it).",
    )
    kv_cache: KvCachePoolSpec | None = Field(None, description="The shared KV-cache pool; absent = none.")
    optimizer: OptimizerSpec | None = Field(None, description="The GPU-mix optimizer; absent = none.")
    diagnostics: DiagnosticsSpec | None = Field(None, description="GPU diagnostics; absent = none.")
    observability: ObservabilitySpec | None = Field(None, description="Prometheus Operator objects; absent = none.")
    images: ImagesSpec = Field(default_factory=ImagesSpec, description="Container images (pinned defaults).")
    network: NetworkSpec = Field(default_factory=NetworkSpec, description="Who may reach the stack's pods.")
    model_cache: ModelCacheSpec | None = Field(
        None, description="Shared cache of downloaded weights; absent = each pod downloads into its own emptyDir."
    )
    prometheus_url: Annotated[NoSecretStr, Field(pattern=PROMETHEUS_URL_PATTERN)] = Field(
        DEFAULT_PROMETHEUS_URL,
        description=(
            "Prometheus HTTP API that KEDA triggers query (autoscaling.useKeda); "
            "the default is the Prometheus Operator's Service in namespace monitoring."
        ),
    )


class InferenceStack(SpecModel):
    """One InferenceStack document."""

    api_version: Literal["aibrix.ai/v1alpha1"] = Field(description="Always aibrix.ai/v1alpha1.")
    kind: Literal["InferenceStack"] = Field(description="Always InferenceStack.")
    metadata: StackMetadata = Field(description="Name, namespace and extra labels.")
    spec: InferenceStackSpec = Field(description="The stack.")
