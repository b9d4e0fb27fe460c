"""aibrix_spec: the InferenceStack API (pydantic v2, camelCase YAML, snake_case Python).

The public surface is this module's ``__all__`` (a test guards it). Submodules:
``stack`` (the root document), ``pools``, ``models``, ``sections`` (gateway, kvCache,
optimizer, diagnostics, observability, images), ``routing`` (the gateway's policy
parameters), ``catalog`` (accelerators and model architectures), ``token_buckets``, and
``components/`` (config files of the runtime components). Light: pydantic and the
standard library only.
"""

from __future__ import annotations

from ._base import SpecModel
from ._types import credential_like_name, find_literal_secret
from .models import (
    AUTOSCALING_METRICS,
    AdapterSpec,
    AutoscalingMetric,
    AutoscalingSpec,
    DisaggregationSpec,
    EngineResources,
    EngineSpec,
    LoraSpec,
    ModelKvCacheSpec,
    ModelSpec,
    ParallelismSpec,
    PdRoleSpec,
    PlacementSpec,
    ReplicasSpec,
    SloSpec,
    SourceSpec,
)
from .pools import GpuPool, Toleration
from .routing import RoutingSpec
from .sections import (
    DEFAULT_IMAGES,
    DiagnosticsSpec,
    FlowControlSpec,
    GatewaySpec,
    ImagesSpec,
    KvCachePoolSpec,
    ModelCacheSpec,
    NetworkSpec,
    ObservabilitySpec,
    OptimizerSpec,
    PeerSpec,
    ProfilesSpec,
    RateLimitsSpec,
    RedisSpec,
    SaturationSpec,
    TierSpec,
    TracingSpec,
    UsersSpec,
)
from .stack import API_VERSION, KIND, InferenceStack, InferenceStackSpec, StackMetadata
from .traffic import RouteSpec, RouteTarget

__all__ = [
    "API_VERSION",
    "AUTOSCALING_METRICS",
    "DEFAULT_IMAGES",
    "KIND",
    "AdapterSpec",
    "AutoscalingMetric",
    "AutoscalingSpec",
    "DiagnosticsSpec",
    "DisaggregationSpec",
    "EngineResources",
    "EngineSpec",
    "FlowControlSpec",
    "GatewaySpec",
    "GpuPool",
    "ImagesSpec",
    "InferenceStack",
    "InferenceStackSpec",
    "KvCachePoolSpec",
    "ModelCacheSpec",
    "NetworkSpec",
    "LoraSpec",
    "ModelKvCacheSpec",
    "ModelSpec",
    "ObservabilitySpec",
    "OptimizerSpec",
    "PeerSpec",
    "ParallelismSpec",
    "PdRoleSpec",
    "PlacementSpec",
    "ProfilesSpec",
    "RateLimitsSpec",
    "RedisSpec",
    "ReplicasSpec",
    "RouteSpec",
    "RouteTarget",
    "RoutingSpec",
    "TracingSpec",
    "SloSpec",
    "SourceSpec",
    "SpecModel",
    "StackMetadata",
    "SaturationSpec",
    "TierSpec",
    "Toleration",
    "UsersSpec",
    "credential_like_name",
    "find_literal_secret",
]
