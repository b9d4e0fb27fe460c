"""What every check receives: the NVML surface (pynvml or the fake), the config, and the GPU.

A per-GPU check is ``check(ctx, gpu) -> CheckResult``; a node check is
``check(ctx, gpus) -> list[CheckResult]``. Checks call only pynvml function names on
``ctx.nvml`` and catch ``ctx.nvml.NVMLError_NotSupported`` themselves; any other NVMLError
escapes to the session, which turns it into a failed result for that check and GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aibrix_spec.components.diag import DiagConfig
from runtime_components.diag.report import CheckResult, GpuIdentity

__all__ = ["CheckContext", "Gpu", "GpuCheck", "NodeCheck", "not_supported"]


@dataclass(frozen=True)
class Gpu:
    """One enumerated GPU: who it is, and its NVML handle."""

    identity: GpuIdentity
    handle: Any

    @property
    def index(self) -> int:
        return self.identity.index


@dataclass(frozen=True)
class CheckContext:
    """The NVML surface (the `pynvml` module or a `FakeNvml`) and the thresholds."""

    nvml: Any
    config: DiagConfig


GpuCheck = Callable[[CheckContext, Gpu], CheckResult]
NodeCheck = Callable[[CheckContext, list[Gpu]], list[CheckResult]]


def not_supported(ctx: CheckContext) -> type[Exception]:
    """The exception class NVML raises for a feature this GPU lacks."""
    return ctx.nvml.NVMLError_NotSupported  # type: ignore[no-any-return]
