"""What one GPU's state (a diag fault-file entry) does to an inference engine running on it.

The simulated engine's GPU-fault physics; the fault file itself is configuration and lives in
``aibrix_spec.components.diag``. A coarse, documented model (assumptions, not measurements):

- crashed when the GPU is not visible or lost, saw a fatal XID, failed a row remap, or is at
  or above its shutdown temperature (a CUDA context does not survive any of these);
- slowdown factor = clocks x links, where clocks is 2.0 for any hardware slowdown reason
  (`hw-slowdown`, `hw-thermal`, `power-brake`, or temperature at the slowdown threshold:
  the hardware halves clocks or more), else 1.25 for `sw-thermal`, else 1.1 for
  `sw-power-cap`; links is ``1 + COMM_SHARE * (1 / r - 1)`` where ``r`` is the remaining
  fraction of the interconnect bandwidth that carries tensor-parallel traffic (NVLink when the
  GPU has links, else PCIe width x per-lane rate) and COMM_SHARE = 0.1 of a step is spent on it;
  with every NVLink down traffic falls back to PCIe, taken as r = 0.1;
- error rate = min(0.5, 0.02 x (uncorrected volatile ECC errors + non-fatal XIDs)): each such
  event kills the requests whose memory it touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from aibrix_spec.components.diag import DEFAULT_XID_FAIL_CODES, GpuState

__all__ = ["COMM_SHARE", "EngineEffect", "gpu_fault_effect"]

COMM_SHARE = 0.1  # assumed share of a step spent on tensor-parallel communication
_PCIE_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}  # usable GB/s per lane
_NVLINK_ALL_DOWN_RATIO = 0.1  # traffic falls back to PCIe, roughly a tenth of NVLink bandwidth
_HW_CLOCK_REASONS = frozenset({"hw-slowdown", "hw-thermal", "power-brake"})
_ERRORS_PER_EVENT = 0.02
_MAX_ERROR_RATE = 0.5


@dataclass(frozen=True)
class EngineEffect:
    """What one GPU's state does to the engine on it."""

    slowdown_factor: float  #: multiply step times by this (>= 1)
    error_rate: float  #: fraction of requests that fail (0..1)
    crashed: bool  #: the engine process cannot run on this GPU
    reasons: tuple[str, ...]  #: why, one phrase per cause


def gpu_fault_effect(gpu: GpuState, *, fatal_xids: tuple[int, ...] = DEFAULT_XID_FAIL_CODES) -> EngineEffect:
    """Map one GPU's fault state to its effect on an inference engine (model in the module docstring).

    >>> gpu_fault_effect(GpuState(clocks_event_reasons=["hw-thermal"])).slowdown_factor
    2.0
    """
    crash_reasons = []
    if not gpu.visible:
        crash_reasons.append("GPU fell off the bus")
    if gpu.lost:
        crash_reasons.append("GPU is lost")
    fatal_seen = sorted({code for code in gpu.xid_events if code in fatal_xids})
    if fatal_seen:
        crash_reasons.append(f"fatal XID {', '.join(map(str, fatal_seen))}")
    if gpu.remapped_rows.failed:
        crash_reasons.append("row remapping failed")
    if gpu.temperature.current_c >= gpu.temperature.shutdown_c:
        crash_reasons.append("at shutdown temperature")
    if crash_reasons:
        return EngineEffect(1.0, 1.0, True, tuple(crash_reasons))

    reasons: list[str] = []
    active = set(gpu.clocks_event_reasons)
    if active & _HW_CLOCK_REASONS or gpu.temperature.current_c >= gpu.temperature.slowdown_c:
        clocks = 2.0
        reasons.append("hardware clock slowdown")
    elif "sw-thermal" in active:
        clocks = 1.25
        reasons.append("software thermal slowdown")
    elif "sw-power-cap" in active:
        clocks = 1.1
        reasons.append("power capped")
    else:
        clocks = 1.0

    ratio = _interconnect_ratio(gpu)
    links = 1.0 + COMM_SHARE * (1.0 / ratio - 1.0)
    if ratio < 1.0:
        reasons.append(f"interconnect at {ratio:.0%} of its bandwidth")

    events = (gpu.ecc.uncorrected_volatile if "ecc" not in gpu.not_supported else 0) + len(gpu.xid_events)
    error_rate = min(_MAX_ERROR_RATE, _ERRORS_PER_EVENT * events)
    if events:
        reasons.append(f"{events} memory/XID error event(s)")
    return EngineEffect(round(clocks * links, 6), error_rate, False, tuple(reasons))


def _interconnect_ratio(gpu: GpuState) -> float:
    """Remaining fraction of the bandwidth that carries tensor-parallel traffic."""
    if gpu.nvlink.links > 0 and "nvlink" not in gpu.not_supported:
        active = gpu.nvlink.links - len(gpu.nvlink.inactive)
        return active / gpu.nvlink.links if active else _NVLINK_ALL_DOWN_RATIO
    pcie = gpu.pcie
    # An idle GPU downshifts its link generation to save power; under load it comes back.
    generation = pcie.max_generation if "gpu-idle" in gpu.clocks_event_reasons else pcie.current_generation
    now = pcie.current_width * _PCIE_LANE_GBPS[generation]
    best = pcie.max_width * _PCIE_LANE_GBPS[pcie.max_generation]
    return now / best
