"""Map a node's GPU fault file (the diag mock-up) onto the simulated engines' faults.

Where it sits: ``aibrix-engine-sim --gpu-faults FILE [--gpu-index N]`` (or the environment
variable ``AIBRIX_DIAG_MOCK``, the same file ``aibrix-diag`` reads) loads a ``FaultFile``,
places the engines on its GPUs and turns each GPU's state into the engine faults of
``faults.py``, so a faulty GPU also slows or fails the engine on it, as diag would predict.

Placement: engine ``i`` with tensor parallelism ``tp`` runs on GPUs
``N + i*tp .. N + i*tp + tp - 1`` (``N`` = ``--gpu-index``, default 0), like one pod per
engine taking the next ``tp`` devices. Per GPU, ``gpu_effect.gpu_fault_effect``
gives ``(slowdown_factor, error_rate, crashed)``; an engine spread over several GPUs runs at
the pace of its slowest one and fails when any of them fails:

    slowdown   = max_g slowdown_g
    error_rate = 1 - prod_g (1 - error_rate_g)      (independent failures)
    crash      = any_g crashed_g, or NVML/driver absent on the node

Without NVML or its driver (``nvml: library-missing | driver-not-loaded``) every engine
crashes. A crash at start means the engine binds its port, then dies at once (connections refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aibrix_spec.components.diag import FaultFile
from runtime_components.common.config_file import load_model_file

from .faults import Faults
from .gpu_effect import EngineEffect, gpu_fault_effect

__all__ = ["GpuPlacement", "MOCK_ENV", "engine_faults", "load_fault_file", "place_engines"]

MOCK_ENV = "AIBRIX_DIAG_MOCK"  #: the diag fault-file variable, honoured when --gpu-faults is absent


@dataclass(frozen=True)
class GpuPlacement:
    """One engine's GPUs and what their state does to it."""

    engine: int
    gpus: tuple[int, ...]
    faults: Faults
    reasons: tuple[str, ...]  #: one phrase per cause, "gpu 3: hardware clock slowdown"

    def describe(self) -> str:
        if not self.gpus:
            where = "no GPU"
        elif len(self.gpus) == 1:
            where = f"GPU {self.gpus[0]}"
        else:
            where = f"GPUs {self.gpus[0]}-{self.gpus[-1]}"
        if not self.reasons:
            return f"engine {self.engine} on {where}: healthy"
        f = self.faults
        effect = "crashes" if f.crash else f"slowdown x{f.slowdown:g}, error rate {f.error_rate:g}"
        return f"engine {self.engine} on {where}: {effect} ({'; '.join(self.reasons)})"


def load_fault_file(path: str | Path) -> FaultFile:
    """The fault file, with the shared loader's line-numbered errors (``ConfigFileError``)."""
    return load_model_file(path, FaultFile, read_hint="check the path given to --gpu-faults or AIBRIX_DIAG_MOCK")


def _combine(effects: list[EngineEffect]) -> tuple[float, float, bool]:
    slowdown = max(e.slowdown_factor for e in effects)
    survive = 1.0
    for e in effects:
        survive *= 1.0 - e.error_rate
    return max(1.0, slowdown), min(1.0, 1.0 - survive), any(e.crashed for e in effects)


def place_engines(fault_file: FaultFile, engines: int, *, first_gpu: int = 0, tensor_parallel: int = 1) -> list[GpuPlacement]:
    """Each engine's GPUs and faults; ValueError when the node has too few GPUs."""
    if first_gpu < 0:
        raise ValueError(f"--gpu-index must be >= 0, got {first_gpu}")
    if fault_file.nvml != "present":
        # Without NVML/driver no CUDA context can be created: every engine dies at start.
        why = (f"node: NVML {fault_file.nvml}",)
        return [GpuPlacement(engine, (), Faults(crash=True), why) for engine in range(engines)]
    needed = first_gpu + engines * tensor_parallel
    if needed > fault_file.gpu_count:
        raise ValueError(
            f"{engines} engine(s) x {tensor_parallel} GPU(s) from GPU {first_gpu} need GPUs up to {needed - 1}, "
            f"but the fault file's node has gpuCount {fault_file.gpu_count}; "
            "hint: lower --engines or --gpu-index, or raise gpuCount in the file"
        )
    gpus = fault_file.resolved_gpus()
    placements = []
    for engine in range(engines):
        start = first_gpu + engine * tensor_parallel
        mine = gpus[start:start + tensor_parallel]
        effects = [gpu_fault_effect(gpu) for gpu in mine]
        slowdown, error_rate, crashed = _combine(effects)
        reasons = tuple(f"gpu {start + k}: {why}" for k, e in enumerate(effects) for why in e.reasons)
        faults = Faults(slowdown=slowdown, error_rate=error_rate, crash=crashed)
        placements.append(GpuPlacement(engine, tuple(range(start, start + tensor_parallel)), faults, reasons))
    return placements


def engine_faults(placements: list[GpuPlacement]) -> dict[int, Faults]:
    """The engines whose GPUs are not healthy, with their faults (for ``EngineCluster``)."""
    return {p.engine: p.faults for p in placements if p.faults != Faults()}
