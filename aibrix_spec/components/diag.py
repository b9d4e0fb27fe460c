"""Config and fault-file models of the GPU diagnostics (`aibrix-diag`).

Two things live here, so that the compiler and the simulated engine can use them without
importing the diag runtime (which needs pynvml):

- `DiagConfig`: what the compiler writes into the diag DaemonSet's ConfigMap (expected GPU
  count, thresholds, pass interval, metrics port, opt-in node condition and taint).
- `FaultFile`: the failure mock-up. It describes one node's GPUs (their NVML-visible state)
  and injected XID events. `aibrix-diag --mock FILE` turns it into a fake NVML; the
  simulated engine reads the same file and applies its own model of what a GPU's state does
  to an engine (`runtime_components.engine_sim.gpu_effect`).

Configuration only, no behaviour. Light: pydantic and the standard library only.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from aibrix_spec._base import SpecModel

__all__ = [
    "CLOCK_REASONS",
    "ClockReason",
    "DEFAULT_XID_FAIL_CODES",
    "NVML_FEATURES",
    "DiagConfig",
    "DiagThresholds",
    "EccState",
    "FaultFile",
    "GpuState",
    "MetricsEndpoint",
    "NodeActions",
    "NvmlFeature",
    "NvlinkState",
    "PcieState",
    "PowerState",
    "RemappedRowsState",
    "RetiredPagesState",
    "TemperatureState",
]

# XIDs after which the GPU needs a reset or replacement (NVIDIA's XID catalogue): 48 double-bit
# ECC, 62 micro-controller halt, 64 remap/retirement failure, 74 NVLink, 79 fallen off the bus,
# 95 uncontained ECC, 119/120 GSP firmware, 140 unrecovered ECC. Others are usually an
# application's fault (13, 31, 43) or a recoverable memory event (63, 92, 94): warn.
DEFAULT_XID_FAIL_CODES: tuple[int, ...] = (48, 62, 64, 74, 79, 95, 119, 120, 140)

ClockReason = Literal["gpu-idle", "sw-power-cap", "hw-slowdown", "sw-thermal", "hw-thermal", "power-brake"]
CLOCK_REASONS: tuple[str, ...] = get_args(ClockReason)

NvmlFeature = Literal[
    "pcie",
    "ecc",
    "retired-pages",
    "remapped-rows",
    "events",
    "temperature-thresholds",
    "clocks-event-reasons",
    "nvlink",
    "power",
]
NVML_FEATURES: tuple[str, ...] = get_args(NvmlFeature)


class DiagThresholds(SpecModel):
    """Where a reading turns from ok to warn or fail."""

    ecc_corrected_volatile_warn: int = Field(
        1000, ge=1, description="Corrected ECC errors since the last driver load at which to warn."
    )
    retired_pages_fail: int = Field(
        60, ge=1, description="Retired pages (single- plus double-bit) at which the GPU is due for replacement."
    )
    temperature_margin_c: int = Field(
        5, ge=0, le=50, description="Warn when the GPU is within this many degrees C of its slowdown threshold."
    )
    power_warn_fraction: float = Field(
        0.98, gt=0, description="Warn when power draw reaches this fraction of the enforced limit."
    )
    power_fail_fraction: float = Field(
        1.10,
        gt=0,
        description="Fail when power draw exceeds the enforced limit by this factor (broken regulation or sensor).",
    )
    power_limit_lowered_fraction: float = Field(
        0.90, gt=0, le=1, description="Warn when the enforced power limit is below this fraction of the default limit."
    )
    xid_fail_codes: list[int] = Field(
        default_factory=lambda: list(DEFAULT_XID_FAIL_CODES),
        description="XID codes that fail the GPU; every other XID warns.",
    )
    expected_nvlinks: int | None = Field(
        None, ge=0, description="Active NVLinks every GPU must have; unset: compare with the node's other GPUs."
    )
    min_driver_version: str | None = Field(
        None, pattern=r"^[0-9]+(\.[0-9]+)*$", description="Warn when the driver is older than this (e.g. 550.54)."
    )

    @model_validator(mode="after")
    def _power_order(self) -> DiagThresholds:
        if self.power_fail_fraction <= self.power_warn_fraction:
            raise ValueError(
                f"powerFailFraction ({self.power_fail_fraction}) must be above powerWarnFraction "
                f"({self.power_warn_fraction})"
            )
        return self


class MetricsEndpoint(SpecModel):
    """The Prometheus endpoint of the periodic mode."""

    enabled: bool = Field(True, description="Serve /metrics in periodic mode.")
    port: int = Field(9402, ge=0, le=65535, description="TCP port (0 picks a free one).")
    bind_address: str = Field("0.0.0.0", min_length=1, description="Address to listen on.")


class NodeActions(SpecModel):
    """Opt-in Kubernetes actions on the node the daemon runs on."""

    set_condition: bool = Field(False, description="Write a node condition with the worst status each pass.")
    condition_type: str = Field(
        "AIBrixGPUProblem",
        pattern=r"^[A-Za-z][A-Za-z0-9]*$",
        description="Condition type; status True means a check failed.",
    )
    taint_on_failure: bool = Field(False, description="Taint the node while a check fails, so new work avoids it.")
    taint_key: str = Field(
        "aibrix.ai/gpu-unhealthy", pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9][-A-Za-z0-9_.]*$", description="Taint key."
    )
    taint_effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        "NoSchedule", description="Taint effect; NoExecute also evicts running pods that do not tolerate it."
    )
    failures_before_taint: int = Field(2, ge=1, description="Consecutive failing passes before tainting.")
    passes_before_untaint: int = Field(3, ge=1, description="Consecutive passes without failure before untainting.")


class DiagConfig(SpecModel):
    """The diag daemon's ConfigMap (also read by the one-shot CLI with --config)."""

    expected_gpu_count: int | None = Field(
        None, ge=0, le=64, description="GPUs this node must show; unset: any count above zero passes."
    )
    interval_seconds: float = Field(60.0, gt=0, description="Seconds between passes in periodic mode.")
    xid_wait_ms: int = Field(1000, ge=0, le=60000, description="One-shot mode: how long to listen for XID events.")
    xid_hold_seconds: float = Field(
        3600.0, ge=0, description="Periodic mode: how long a seen XID keeps its GPU's xid check at warn/fail."
    )
    thresholds: DiagThresholds = Field(default_factory=DiagThresholds, description="Check thresholds.")
    metrics: MetricsEndpoint = Field(default_factory=MetricsEndpoint, description="Prometheus endpoint.")
    node: NodeActions = Field(default_factory=NodeActions, description="Node condition and taint.")


class PcieState(SpecModel):
    """PCIe link: current generation/width against the maximum the GPU and slot support."""

    current_generation: int = Field(5, ge=1, le=6, description="Current link generation.")
    max_generation: int = Field(5, ge=1, le=6, description="Maximum link generation.")
    current_width: int = Field(16, ge=1, le=32, description="Current lanes.")
    max_width: int = Field(16, ge=1, le=32, description="Maximum lanes.")

    @model_validator(mode="after")
    def _current_within_max(self) -> PcieState:
        if self.current_generation > self.max_generation:
            raise ValueError(f"currentGeneration {self.current_generation} exceeds maxGeneration {self.max_generation}")
        if self.current_width > self.max_width:
            raise ValueError(f"currentWidth {self.current_width} exceeds maxWidth {self.max_width}")
        return self


class EccState(SpecModel):
    """ECC mode and error counters (volatile: since driver load; aggregate: lifetime)."""

    enabled: bool = Field(True, description="ECC mode currently enabled.")
    corrected_volatile: int = Field(0, ge=0, description="Corrected errors since the driver loaded.")
    uncorrected_volatile: int = Field(0, ge=0, description="Uncorrected errors since the driver loaded.")
    corrected_aggregate: int = Field(0, ge=0, description="Corrected errors over the GPU's life.")
    uncorrected_aggregate: int = Field(0, ge=0, description="Uncorrected errors over the GPU's life.")

    @model_validator(mode="after")
    def _aggregate_covers_volatile(self) -> EccState:
        if self.uncorrected_aggregate < self.uncorrected_volatile:
            raise ValueError("uncorrectedAggregate must be at least uncorrectedVolatile (lifetime includes now)")
        if self.corrected_aggregate < self.corrected_volatile:
            raise ValueError("correctedAggregate must be at least correctedVolatile (lifetime includes now)")
        return self


class RetiredPagesState(SpecModel):
    """Dynamic page retirement (pre-Ampere GPUs)."""

    single_bit: int = Field(0, ge=0, description="Pages retired for multiple single-bit errors.")
    double_bit: int = Field(0, ge=0, description="Pages retired for a double-bit error.")
    pending: bool = Field(False, description="A retirement waits for the next GPU reset.")


class RemappedRowsState(SpecModel):
    """Row remapping (Ampere and later)."""

    corrected: int = Field(0, ge=0, description="Rows remapped for corrected errors.")
    uncorrected: int = Field(0, ge=0, description="Rows remapped for uncorrected errors.")
    pending: bool = Field(False, description="A remap waits for the next GPU reset.")
    failed: bool = Field(False, description="A remap failed: no spare rows left.")


class TemperatureState(SpecModel):
    """Core temperature and its thresholds, degrees C."""

    current_c: int = Field(45, ge=0, le=150, description="Current GPU core temperature.")
    slowdown_c: int = Field(87, ge=1, le=150, description="Hardware slowdown threshold.")
    shutdown_c: int = Field(92, ge=1, le=150, description="Hardware shutdown threshold.")

    @model_validator(mode="after")
    def _ordered(self) -> TemperatureState:
        if self.slowdown_c >= self.shutdown_c:
            raise ValueError(f"slowdownC {self.slowdown_c} must be below shutdownC {self.shutdown_c}")
        return self


class NvlinkState(SpecModel):
    """NVLinks the GPU has, and which of them are down."""

    links: int = Field(18, ge=0, le=36, description="Links the GPU has (0: a PCIe GPU without NVLink).")
    inactive: list[int] = Field(default_factory=list, description="Link numbers that are down.")

    @model_validator(mode="after")
    def _inactive_in_range(self) -> NvlinkState:
        bad = [link for link in self.inactive if not 0 <= link < self.links]
        if bad:
            raise ValueError(f"inactive links {bad} are outside 0..{self.links - 1}")
        if len(set(self.inactive)) != len(self.inactive):
            raise ValueError("inactive lists a link twice")
        return self


class PowerState(SpecModel):
    """Power draw and limits, watts."""

    usage_w: float = Field(350.0, ge=0, description="Current draw.")
    limit_w: float = Field(700.0, gt=0, description="Enforced power limit.")
    default_limit_w: float = Field(700.0, gt=0, description="The board's default power limit.")


def _h100_not_supported() -> list[NvmlFeature]:
    return ["retired-pages"]  # Ampere and later remap rows instead of retiring pages


class GpuState(SpecModel):
    """Everything NVML reports about one GPU. The defaults describe a healthy H100 SXM."""

    index: int | None = Field(None, ge=0, description="GPU index (required under `gpus`, absent in `defaults`).")
    name: str = Field("NVIDIA H100 80GB HBM3", min_length=1, description="Product name NVML reports.")
    uuid: str | None = Field(None, description="GPU UUID; default GPU-mock-<node>-<index>.")
    visible: bool = Field(True, description="False: the GPU fell off the bus and NVML does not count it.")
    lost: bool = Field(False, description="True: NVML counts the GPU but every call on it fails (GPU is lost).")
    pcie: PcieState = Field(default_factory=PcieState, description="PCIe link.")
    ecc: EccState = Field(default_factory=EccState, description="ECC mode and counters.")
    retired_pages: RetiredPagesState = Field(default_factory=RetiredPagesState, description="Retired pages.")
    remapped_rows: RemappedRowsState = Field(default_factory=RemappedRowsState, description="Remapped rows.")
    xid_events: list[int] = Field(default_factory=list, description="XID codes delivered as critical events.")
    temperature: TemperatureState = Field(default_factory=TemperatureState, description="Temperature.")
    clocks_event_reasons: list[ClockReason] = Field(
        default_factory=list, description=f"Active clock event (throttle) reasons, of: {', '.join(CLOCK_REASONS)}."
    )
    nvlink: NvlinkState = Field(default_factory=NvlinkState, description="NVLinks.")
    power: PowerState = Field(default_factory=PowerState, description="Power.")
    not_supported: list[NvmlFeature] = Field(
        default_factory=_h100_not_supported,
        description=f"Features whose NVML calls raise NotSupported, of: {', '.join(NVML_FEATURES)}.",
    )

    @model_validator(mode="after")
    def _xids_positive(self) -> GpuState:
        if any(code <= 0 for code in self.xid_events):
            raise ValueError(f"xidEvents must be positive XID codes, got {self.xid_events}")
        return self


class FaultFile(SpecModel):
    """One node's GPUs as the NVML fake presents them.

    Every GPU starts from `defaults`; an entry under `gpus` overrides only the fields it names
    (nested blocks merge field by field; lists are replaced).
    """

    node: str = Field("mock-node", min_length=1, description="Node name reported (and used in default UUIDs).")
    nvml: Literal["present", "library-missing", "driver-not-loaded"] = Field(
        "present", description="library-missing: nvmlInit cannot load NVML; driver-not-loaded: the driver is down."
    )
    driver_version: str = Field("550.90.07", min_length=1, description="Driver version NVML reports.")
    nvml_version: str = Field("12.550.90.07", min_length=1, description="NVML library version.")
    gpu_count: int = Field(8, ge=0, le=64, description="GPUs installed in the node (visible or not).")
    defaults: GpuState = Field(default_factory=GpuState, description="State every GPU starts from.")
    gpus: list[GpuState] = Field(default_factory=list, description="Per-GPU overrides, by index.")

    @model_validator(mode="after")
    def _indices(self) -> FaultFile:
        if self.defaults.index is not None:
            raise ValueError("defaults must not set `index`; put per-GPU state under `gpus`")
        seen: set[int] = set()
        for position, gpu in enumerate(self.gpus):
            if gpu.index is None:
                raise ValueError(f"gpus[{position}] needs an `index` (0..{self.gpu_count - 1})")
            if gpu.index >= self.gpu_count:
                raise ValueError(f"gpus[{position}].index {gpu.index} is not below gpuCount {self.gpu_count}")
            if gpu.index in seen:
                raise ValueError(f"gpus[{position}].index {gpu.index} appears twice")
            seen.add(gpu.index)
        return self

    def resolved_gpus(self) -> list[GpuState]:
        """All `gpu_count` GPUs, each `defaults` merged with its override, with index and UUID set."""
        base = self.defaults.model_dump()
        overrides = {gpu.index: gpu.model_dump(exclude_unset=True) for gpu in self.gpus}
        resolved = []
        for index in range(self.gpu_count):
            merged = _deep_merge(base, overrides.get(index, {}))
            merged["index"] = index
            if merged.get("uuid") is None:
                merged["uuid"] = f"GPU-mock-{self.node}-{index}"
            resolved.append(GpuState.model_validate(merged))
        return resolved


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
