"""Config model of the autoscaler (`aibrix-scaler`): what the compiler writes into its ConfigMap.

One `ScalerConfig` lists the workloads one scaler instance drives. For each `ScalingTarget`:

- `scaleTargetRef` names the workload whose `scale` subresource the scaler writes;
- `metric` says what is measured, where (`engine` pods' `/metrics`, found by `podSelector`, or
  the optimizer's `/metrics`), and whether the value is `per-pod` (each engine reports its own
  share; the scaler sums them) or a `total` (one number for the whole workload). Aggregation is
  always stated, never guessed from the metric's name;
- `target` is what ONE replica should carry, in the metric's unit. Every policy computes the
  raw replica need as `total / target` (for the optimizer's desired-replica gauge, target 1);
- `policy` picks the algorithm (`hpa`, `kpa`, `apa`); its parameters sit in the block of the
  same name (`hpa:`, `kpa:`, `apa:`), defaults written here as data.

Light: pydantic only (imported by the compiler).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aibrix_spec._base import SpecModel
from aibrix_spec.engine_metrics import EngineName

__all__ = [
    "ApaParams",
    "DemandSource",
    "EngineMetricSource",
    "HpaParams",
    "KpaParams",
    "LeaderElection",
    "MetricSpec",
    "OptimizerMetricSource",
    "ScaleTargetRef",
    "ScalerConfig",
    "ScalingTarget",
]

PolicyName = Literal["hpa", "kpa", "apa"]


class ScaleTargetRef(SpecModel):
    """The workload whose scale subresource is written (apps/v1 only)."""

    api_version: Literal["apps/v1"] = Field("apps/v1", description="API group/version of the workload.")
    kind: Literal["Deployment", "StatefulSet"] = Field(
        "Deployment", description="Workload kind; its `scale` subresource is read and patched."
    )
    name: str = Field(min_length=1, description="Workload name.")
    namespace: str = Field(min_length=1, description="Workload namespace.")


class EngineMetricSource(SpecModel):
    """Scrape every ready engine pod matching `podSelector` (listed through the Kubernetes API)."""

    port: int = Field(
        8000,
        ge=1,
        le=65535,
        description="Port of the pod's metrics endpoint; a pod label `model.aibrix.ai/port` overrides it.",
    )
    path: str = Field("/metrics", pattern=r"^/", description="HTTP path of the Prometheus endpoint.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Only samples carrying all these labels count (e.g. {model_name: llama-3-8b}).",
    )
    engine: EngineName | None = Field(
        None,
        description="The pods' engine (vllm or sglang): metric names are translated into its dialect "
        "(vllm:num_requests_running -> sglang:num_running_reqs). Absent: detected from each page's name prefix.",
    )


class OptimizerMetricSource(SpecModel):
    """Read one gauge from the GPU optimizer's `/metrics` (a total for the workload)."""

    url: str = Field(pattern=r"^https?://", description="Full URL of the optimizer's /metrics.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels selecting the series, e.g. {model: llama-3-8b, pool: l20}.",
    )


class DemandSource(SpecModel):
    """The gateway's view of a model's demand: requests held in its queues plus those in flight.

    Read from every gateway replica's ``/metrics`` (``aibrix_gateway_flow_held_requests`` and
    ``aibrix_gateway_flow_inflight_requests``, label ``model``) and summed. It is what lets a
    workload scale from zero: at zero replicas no engine reports anything."""

    urls: list[str] = Field(min_length=1, description="Each gateway replica's /metrics URL.")
    model: str = Field(min_length=1, description='The OpenAI model name (the gateway metrics\' "model" label).')
    poll_seconds: float = Field(
        0.5, gt=0, le=60,
        description="How often the gateways are polled (a held request wakes a workload at zero within this).",
    )
    scale_to_zero_grace_seconds: float = Field(
        60, ge=0, description="minReplicas 0: demand must stay at zero this long before the workload goes to zero replicas."
    )


class MetricSpec(SpecModel):
    """What is measured and how the values of several pods combine."""

    name: str = Field(min_length=1, description="Prometheus metric name, e.g. vllm:num_requests_running.")
    sum_with: list[str] = Field(
        default_factory=list,
        description="More metric names whose samples are added to `name`'s, per pod (e.g. "
        "vllm:num_requests_waiting, so that running + waiting gives the concurrency Knative scales on).",
    )
    source: Literal["engine", "optimizer"] = Field(description="Where the metric is read.")
    aggregation: Literal["per-pod", "total"] = Field(
        description="per-pod: each pod reports its own value and the scaler sums them; "
        "total: the value already describes the whole workload."
    )
    engine: EngineMetricSource | None = Field(None, description="Scrape settings when source is engine.")
    optimizer: OptimizerMetricSource | None = Field(None, description="Endpoint when source is optimizer.")

    @model_validator(mode="after")
    def _source_matches(self) -> MetricSpec:
        if self.source == "engine":
            if self.optimizer is not None:
                raise ValueError("metric.optimizer is set but metric.source is engine; remove one of them")
            if self.aggregation != "per-pod":
                raise ValueError(
                    "metric.source engine reports one value per pod, so metric.aggregation must be per-pod"
                )
        else:
            if self.optimizer is None:
                raise ValueError("metric.source optimizer needs metric.optimizer.url (the optimizer's /metrics)")
            if self.engine is not None:
                raise ValueError("metric.engine is set but metric.source is optimizer; remove one of them")
            if self.aggregation != "total":
                raise ValueError(
                    "the optimizer's gauge is one number for the workload, so metric.aggregation must be total"
                )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """Every metric name that is summed."""
        return (self.name, *self.sum_with)

    @property
    def display(self) -> str:
        """The summed names, joined with `+` (for logs, events and tables)."""
        return "+".join(self.names)

    @property
    def engine_source(self) -> EngineMetricSource:
        """Engine scrape settings, with defaults when the block is omitted."""
        return self.engine if self.engine is not None else EngineMetricSource.model_validate({})


class HpaParams(SpecModel):
    """Kubernetes HorizontalPodAutoscaler behaviour (defaults are Kubernetes' own)."""

    tolerance: float = Field(0.1, ge=0, lt=1, description="No change while |usage/target - 1| <= tolerance.")
    scale_down_stabilization_seconds: float = Field(
        300, ge=0, description="Scale down only to the highest recommendation of this window."
    )
    scale_up_stabilization_seconds: float = Field(
        0, ge=0, description="Scale up only to the lowest recommendation of this window."
    )
    metric_window_seconds: float = Field(
        15, gt=0, description="The metric is averaged over this window (what a metrics adapter reports)."
    )
    scale_up_percent: float = Field(100, gt=0, description="Scale-up policy: add at most this percent per period.")
    scale_up_pods: int = Field(4, ge=1, description="Scale-up policy: or at most this many pods per period (max wins).")
    scale_down_percent: float = Field(
        100, gt=0, le=100, description="Scale-down policy: remove at most this percent per period."
    )
    policy_period_seconds: float = Field(15, gt=0, description="Period of the scale-up/down policies.")
    sync_period_seconds: float = Field(15, gt=0, description="Time between two decisions (kube-controller-manager).")


class KpaParams(SpecModel):
    """Knative Pod Autoscaler behaviour (defaults are Knative's own)."""

    stable_window_seconds: float = Field(60, ge=6, description="Averaging window of stable mode.")
    panic_window_seconds: float = Field(6, ge=1, description="Averaging window of panic mode.")
    panic_threshold: float = Field(
        2.0, gt=1, description="Enter panic when panic-window need / ready pods reaches this ratio."
    )
    max_scale_up_rate: float = Field(1000, gt=1, description="At most ready pods x this rate per decision.")
    max_scale_down_rate: float = Field(2, gt=1, description="At least ready pods / this rate per decision.")
    scale_down_delay_seconds: float = Field(
        300, ge=0,
        description="Scale down only to the highest decision of this window. 300 s, Kubernetes HPA's scale-down "
        "stabilisation (Knative's default is 0: on benchmarks.autoscaling that oscillated and lost to HPA on P99).",
    )
    scale_to_zero: bool = Field(False, description="Allow 0 replicas when minReplicas is 0 and nothing arrives.")
    scale_to_zero_grace_seconds: float = Field(
        30, ge=0, description="Zero load must last this long before scaling to zero."
    )
    sync_period_seconds: float = Field(2, gt=0, description="Time between two decisions (Knative's tick).")

    @model_validator(mode="after")
    def _panic_inside_stable(self) -> KpaParams:
        if self.panic_window_seconds > self.stable_window_seconds:
            raise ValueError(
                f"kpa.panicWindowSeconds ({self.panic_window_seconds}) must not exceed "
                f"kpa.stableWindowSeconds ({self.stable_window_seconds})"
            )
        return self


class ApaParams(SpecModel):
    """AIBrix Pod Autoscaler: a dead band of fluctuation tolerances around the target."""

    up_fluctuation_tolerance: float = Field(
        0.1, ge=0, description="Scale up only when usage/target exceeds 1 + this."
    )
    down_fluctuation_tolerance: float = Field(
        0.2, ge=0, lt=1, description="Scale down only when usage/target falls below 1 - this."
    )
    window_seconds: float = Field(60, gt=0, description="Averaging window of the metric.")
    max_scale_up_rate: float = Field(2, gt=1, description="At most current pods x this rate per decision.")
    max_scale_down_rate: float = Field(2, gt=1, description="At least current pods / this rate per decision.")
    scale_up_cooldown_seconds: float = Field(0, ge=0, description="Minimum time between two scale-ups.")
    scale_down_cooldown_seconds: float = Field(
        300, ge=0,
        description="Minimum time after any scaling before a scale-down. 300 s, Kubernetes HPA's scale-down "
        "stabilisation (AIBrix's APA default is 60 s).",
    )
    sync_period_seconds: float = Field(2, gt=0, description="Time between two decisions.")


class ScalingTarget(SpecModel):
    """One workload, its metric, its bounds and its policy."""

    name: str = Field(min_length=1, description="Name of this entry (used in metrics, events and logs).")
    scale_target_ref: ScaleTargetRef = Field(description="Workload whose scale subresource is written.")
    pod_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels of the workload's pods (needed when metric.source is engine)."
    )
    metric: MetricSpec = Field(description="What is measured and how values combine.")
    target: float = Field(gt=0, description="Metric value one replica should carry (per-pod unit).")
    min_replicas: int = Field(
        1, ge=0, description="Lower bound; 0 only with kpa.scaleToZero or a demand source (scale from zero)."
    )
    max_replicas: int = Field(ge=1, description="Upper bound.")
    policy: PolicyName = Field(description="Algorithm: hpa, kpa or apa.")
    hpa: HpaParams = Field(default_factory=HpaParams, description="Parameters when policy is hpa.")
    kpa: KpaParams = Field(default_factory=KpaParams, description="Parameters when policy is kpa.")
    apa: ApaParams = Field(default_factory=ApaParams, description="Parameters when policy is apa.")
    demand: DemandSource | None = Field(
        None,
        description="The gateway's held + in-flight requests for this model. With minReplicas 0 they wake the "
        "workload from zero at once and keep it at one replica or more while there is demand; at any size the "
        "held requests no starting pod will absorb add to a metric that counts requests (docs/scaler.md).",
    )
    scrape_interval_seconds: float = Field(1, gt=0, description="Time between two metric scrapes.")
    stale_after_seconds: float = Field(
        30, gt=0, description="Hold the last decision when the newest sample is older than this."
    )
    frozen_after_seconds: float = Field(
        60, gt=0,
        description="A pod whose metric says work is in flight while none of its counters moved (or whose sample "
        "timestamps stopped) for this long is treated as not reporting, like a pod whose scrape failed.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScalingTarget:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) exceeds maxReplicas ({self.max_replicas})")
        if self.min_replicas == 0 and not (self.policy == "kpa" and self.kpa.scale_to_zero) and self.demand is None:
            raise ValueError(
                "minReplicas 0 needs a demand source (the gateway's held requests wake the workload) or policy kpa "
                "with kpa.scaleToZero: true; otherwise use 1 or more"
            )
        if self.demand is not None and self.policy == "hpa":
            raise ValueError("demand is read by the kpa and apa policies; with hpa use KEDA's trigger instead")
        if self.metric.source == "engine" and not self.pod_selector:
            raise ValueError("metric.source engine needs podSelector (the labels of the workload's pods)")
        for other in ("hpa", "kpa", "apa"):
            if other != self.policy and other in self.model_fields_set:
                raise ValueError(f"block `{other}` is set but policy is {self.policy}; remove it or change policy")
        return self

    @property
    def params(self) -> HpaParams | KpaParams | ApaParams:
        """The parameter block of the chosen policy."""
        if self.policy == "hpa":
            return self.hpa
        if self.policy == "kpa":
            return self.kpa
        return self.apa

    @property
    def sync_period_seconds(self) -> float:
        """Time between two decisions, from the chosen policy's block."""
        return self.params.sync_period_seconds


class LeaderElection(SpecModel):
    """One active scaler at a time, through a coordination.k8s.io Lease."""

    enabled: bool = Field(False, description="Turn on when more than one scaler replica runs.")
    lease_name: str = Field("aibrix-scaler", min_length=1, description="Name of the Lease object.")
    namespace: str = Field("default", min_length=1, description="Namespace of the Lease.")
    lease_duration_seconds: int = Field(15, ge=1, description="A holder that has not renewed for this long loses it.")
    renew_period_seconds: float = Field(5, gt=0, description="How often the holder renews.")

    @model_validator(mode="after")
    def _renew_faster_than_expiry(self) -> LeaderElection:
        if self.renew_period_seconds >= self.lease_duration_seconds:
            raise ValueError(
                f"leaderElection.renewPeriodSeconds ({self.renew_period_seconds}) must be shorter than "
                f"leaseDurationSeconds ({self.lease_duration_seconds})"
            )
        return self


class ScalerConfig(SpecModel):
    """The whole scaler ConfigMap document."""

    targets: list[ScalingTarget] = Field(min_length=1, description="Workloads this scaler drives.")
    leader_election: LeaderElection = Field(default_factory=LeaderElection, description="Lease settings.")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Port of the scaler's own /metrics (0: any).")

    @model_validator(mode="after")
    def _unique_names(self) -> ScalerConfig:
        seen: set[str] = set()
        for target in self.targets:
            if target.name in seen:
                raise ValueError(f"targets: duplicate name {target.name!r}; each target needs its own name")
            seen.add(target.name)
        return self
