"""Config models of the SLO-driven GPU optimizer: its service config and its profile files.

Two documents live here, both plain pydantic so the compiler can write and validate them
without importing the optimizer:

* ``OptimizerConfig``: what the compiler puts in the optimizer's ConfigMap (pools with
  cost and caps, models with their SLO and allowed pools, where the workload comes from,
  how to solve). The optimizer service and ``aibrix-optimize plan --config`` load it.
* ``GpuProfile``: one profile file: for one model on one accelerator (``gpusPerReplica``
  GPUs per replica), the highest request rate per replica that still meets the SLO, for
  each (input-token bucket, output-token bucket) cell of the log2 grid of
  ``aibrix_spec.token_buckets``. ``0`` means the SLO cannot be met in that cell at any rate.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from aibrix_spec._base import SpecModel
from aibrix_spec.token_buckets import BUCKETS

__all__ = [
    "SloTargets",
    "OptimizerPool",
    "OptimizerModel",
    "WorkloadSource",
    "OptimizerConfig",
    "GpuProfile",
    "DEFAULT_DERIVE_INPUT_BUCKETS",
    "DEFAULT_DERIVE_OUTPUT_BUCKETS",
]

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

#: The coarse grid derived profiles use by default (workload cells round up to it).
DEFAULT_DERIVE_INPUT_BUCKETS = (64, 256, 1024, 4096)
DEFAULT_DERIVE_OUTPUT_BUCKETS = (32, 128, 512, 2048)


def _check_buckets(name: str, values: list[int]) -> None:
    bad = [b for b in values if b not in BUCKETS]
    if bad:
        raise ValueError(f"{name}: {bad} are not log2 buckets; expected values from {list(BUCKETS)}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {values}")


class SloTargets(SpecModel):
    """Latency targets a profile cell must meet at its max rate (p99 over requests)."""

    ttft_p99_ms: float | None = Field(default=None, gt=0, description="p99 time to first token, milliseconds.")
    tpot_p99_ms: float | None = Field(default=None, gt=0, description="p99 time per output token after the first, milliseconds.")

    @model_validator(mode="after")
    def _at_least_one(self) -> SloTargets:
        if self.ttft_p99_ms is None and self.tpot_p99_ms is None:
            raise ValueError("an SLO needs at least one of ttftP99Ms or tpotP99Ms")
        return self


class OptimizerPool(SpecModel):
    """A GPU pool the optimizer may place replicas in."""

    name: str = Field(pattern=_DNS_LABEL, description="Pool name, as in the stack's gpuPools.")
    accelerator: str = Field(min_length=1, description="Accelerator catalogue key, e.g. nvidia-a10.")
    cost_per_gpu_hour: float = Field(gt=0, description="USD per GPU-hour in this pool.")
    max_gpus: int | None = Field(
        default=None, ge=0, description="Cap on GPUs used in this pool by all models together; unset = no cap."
    )


class OptimizerModel(SpecModel):
    """A model whose replicas the optimizer distributes over pools."""

    name: str = Field(min_length=1, description="The OpenAI model name (the gateway's `model` label).")
    arch: str | None = Field(
        default=None, description="Model-architecture catalogue key used to derive roofline profiles; defaults to `name`."
    )
    pools: list[str] = Field(min_length=1, description="Pools this model may run in.")
    gpus_per_replica: int = Field(default=1, ge=1, description="GPUs one replica uses (tensor x pipeline parallelism).")
    min_replicas: int = Field(default=0, ge=0, description="Replicas kept in total over all pools, even without traffic.")
    max_replicas: int | None = Field(default=None, ge=0, description="Cap on replicas in total over all pools; unset = no cap.")
    slo: SloTargets = Field(description="Latency targets the profiles were made for.")

    @model_validator(mode="after")
    def _check(self) -> OptimizerModel:
        if len(set(self.pools)) != len(self.pools):
            raise ValueError(f"model {self.name!r} lists a pool twice in pools: {self.pools}")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"model {self.name!r}: minReplicas {self.min_replicas} exceeds maxReplicas {self.max_replicas}"
            )
        return self

    @property
    def arch_name(self) -> str:
        return self.arch or self.name


class WorkloadSource(SpecModel):
    """Where the observed workload comes from: the gateway's histogram, or a file."""

    gateway_metrics_urls: list[str] = Field(
        default_factory=list,
        description="Gateway /metrics URLs; the counter aibrix_gateway_request_token_buckets_total is summed over them.",
    )
    file: str | None = Field(default=None, description="A workload JSON file (see docs/optimizer.md), used when no gateway runs.")
    window_seconds: float = Field(default=300.0, gt=0, description="Rates are averaged over this sliding window.")

    @model_validator(mode="after")
    def _exactly_one(self) -> WorkloadSource:
        if bool(self.gateway_metrics_urls) == (self.file is not None):
            raise ValueError("workload needs exactly one of gatewayMetricsUrls or file")
        return self


class OptimizerConfig(SpecModel):
    """The optimizer's whole configuration (its ConfigMap)."""

    pools: list[OptimizerPool] = Field(min_length=1, description="GPU pools with cost and caps.")
    models: list[OptimizerModel] = Field(min_length=1, description="Models to place.")
    workload: WorkloadSource = Field(description="Where request rates per token bucket come from.")
    profiles_dir: str | None = Field(default=None, description="Folder of profile JSON files (one per model x accelerator).")
    derive_missing_profiles: bool = Field(
        default=True, description="Derive a roofline profile when no file covers a model x accelerator."
    )
    derive_input_buckets: list[int] = Field(
        default_factory=lambda: list(DEFAULT_DERIVE_INPUT_BUCKETS),
        description="Input buckets of derived profiles (cells between them round up); fewer derive faster.",
    )
    derive_output_buckets: list[int] = Field(
        default_factory=lambda: list(DEFAULT_DERIVE_OUTPUT_BUCKETS),
        description="Output buckets of derived profiles.",
    )
    derive_request_tokens: Literal["upper", "geometric"] = Field(
        default="geometric",
        description="Which length inside each bucket derived profiles simulate (see GpuProfile.requestTokens).",
    )
    solver: Literal["cbc", "highs"] = Field(default="cbc", description="cbc (PuLP's bundled CBC) or highs (highspy).")
    assignment: Literal["fractional", "integral"] = Field(
        default="fractional",
        description="fractional: any share of a bucket may go to any pool; "
        "integral: whole slices (slicesPerBucket) per pool, as in Melange.",
    )
    slices_per_bucket: int = Field(default=4, ge=1, le=64, description="Slices per bucket for integral assignment.")
    target_utilization: float = Field(
        default=0.9, gt=0, le=1, description="Plan replicas so that each runs at most this fraction of its profiled max rate."
    )
    interval_seconds: float = Field(default=30.0, gt=0, description="The service re-solves this often.")
    solver_time_limit_seconds: float = Field(default=10.0, gt=0, description="Per-solve time limit.")

    @model_validator(mode="after")
    def _cross_references(self) -> OptimizerConfig:
        _check_buckets("deriveInputBuckets", self.derive_input_buckets)
        _check_buckets("deriveOutputBuckets", self.derive_output_buckets)
        pool_names = [p.name for p in self.pools]
        for kind, names in (("pool", pool_names), ("model", [m.name for m in self.models])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} name(s): {', '.join(dupes)}")
        for model in self.models:
            unknown = [p for p in model.pools if p not in pool_names]
            if unknown:
                raise ValueError(
                    f"model {model.name!r} refers to unknown pool(s) {', '.join(unknown)}; "
                    f"known pools: {', '.join(pool_names)}"
                )
        return self

    def pool(self, name: str) -> OptimizerPool:
        return next(p for p in self.pools if p.name == name)


class GpuProfile(SpecModel):
    """Max request rate per replica meeting the SLO, per (input, output) token bucket cell."""

    model: str = Field(min_length=1, description="Model name the profile was made for.")
    accelerator: str = Field(min_length=1, description="Accelerator catalogue key.")
    gpus_per_replica: int = Field(default=1, ge=1, description="GPUs in the profiled replica.")
    slo: SloTargets = Field(description="The SLO the rates meet.")
    method: Literal["roofline", "measured"] = Field(
        description="roofline (derived from the engine model) or measured (aibrix-optimize profile)."
    )
    request_tokens: Literal["upper", "geometric"] = Field(
        default="upper",
        description="Which length inside each bucket was profiled. upper: the bucket's upper bound, so the rate "
        "holds for every request in the cell; geometric: the geometric mean of the token range the bucket covers "
        "in this grid (typical requests), which plans less headroom.",
    )
    input_buckets: list[int] = Field(min_length=1, description="Input-token buckets (rows), increasing, from the log2 grid.")
    output_buckets: list[int] = Field(min_length=1, description="Output-token buckets (columns), increasing, from the log2 grid.")
    max_rps: list[list[float]] = Field(
        description="maxRps[i][j]: requests/s per replica for input bucket i, output bucket j; 0 = SLO unmet at any rate."
    )

    @model_validator(mode="after")
    def _check_grid(self) -> GpuProfile:
        _check_buckets("inputBuckets", self.input_buckets)
        _check_buckets("outputBuckets", self.output_buckets)
        if len(self.max_rps) != len(self.input_buckets):
            raise ValueError(f"maxRps has {len(self.max_rps)} rows, expected one per input bucket ({len(self.input_buckets)})")
        for i, row in enumerate(self.max_rps):
            if len(row) != len(self.output_buckets):
                raise ValueError(
                    f"maxRps[{i}] has {len(row)} values, expected one per output bucket ({len(self.output_buckets)})"
                )
            for j, value in enumerate(row):
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"maxRps[{i}][{j}] = {value}: expected a finite rate >= 0")
        return self
