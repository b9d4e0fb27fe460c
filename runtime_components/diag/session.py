"""One diagnostic pass over a node, and the NVML state that lives across passes.

A pass: nvmlInit (once per session; retried each pass while it fails) -> driver -> device-count
-> enumerate GPUs (nvmlDeviceGetHandleByIndex, Name, UUID; a GPU whose identity cannot be read
gets one failed `device-access` result and no other checks) -> drain XID events -> every
per-GPU check in `GPU_CHECKS` order -> node checks. An NVMLError escaping a check (other than
NotSupported, which checks handle) becomes a failed result for that check and GPU, so one bad
GPU never hides the others.

`NVMLError_LibraryNotFound` from nvmlInit means this machine has no NVML at all: the report says
`no-nvml` (its own exit code), it is not a failure.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from aibrix_spec.components.diag import DiagConfig
from runtime_components.diag.checks_device import check_clocks, check_pcie, check_power, check_temperature
from runtime_components.diag.checks_memory import check_ecc, check_remapped_rows, check_retired_pages
from runtime_components.diag.checks_node import check_device_count, check_driver, check_nvlink, judge_init_error
from runtime_components.diag.context import CheckContext, Gpu, GpuCheck, NodeCheck
from runtime_components.diag.report import CheckResult, GpuIdentity, Report, Status
from runtime_components.diag.xid import XidMonitor, check_xid

__all__ = ["CHECK_NAMES", "DiagSession", "GPU_CHECKS", "NODE_CHECKS"]

GPU_CHECKS: dict[str, GpuCheck] = {
    "pcie": check_pcie,
    "ecc": check_ecc,
    "retired-pages": check_retired_pages,
    "remapped-rows": check_remapped_rows,
    "temperature": check_temperature,
    "clocks": check_clocks,
    "power": check_power,
}
NODE_CHECKS: dict[str, NodeCheck] = {"nvlink": check_nvlink}
#: every check name a report can contain
CHECK_NAMES = ("driver", "device-count", "device-access", *GPU_CHECKS, "xid", *NODE_CHECKS)


class DiagSession:
    """Runs passes against one NVML surface (the `pynvml` module or a `FakeNvml`).

    Use as a context manager; `close()` frees the XID event set and shuts NVML down.
    """

    def __init__(
        self, nvml: Any, config: DiagConfig, *, node: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.nvml = nvml
        self.config = config
        self.node = node
        self._clock = clock
        self._ctx = CheckContext(nvml, config)
        self._initialised = False
        self._monitor: XidMonitor | None = None

    def __enter__(self) -> DiagSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.close_monitor()
        if self._initialised:
            self.nvml.nvmlShutdown()
            self._initialised = False

    def run_pass(self, *, xid_wait_ms: int, xid_window: str | None = None) -> Report:
        """One pass. `xid_wait_ms`: how long to wait for the first XID event (0: take what is queued)."""
        started = time.perf_counter()
        nv = self.nvml
        if not self._initialised:
            try:
                nv.nvmlInit()
            except nv.NVMLError_LibraryNotFound as error:
                return Report(self.node, nvml_available=False, nvml_error=str(error))
            except nv.NVMLError as error:
                return self._report([judge_init_error(nv, error)], started)
            self._initialised = True
        try:
            driver, nvml_version = nv.nvmlSystemGetDriverVersion(), nv.nvmlSystemGetNVMLVersion()
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as error:
            stopped = f"NVML stopped answering ({error}): the driver is wedged; drain the node and reboot it"
            return self._report([CheckResult("driver", None, Status.FAIL, stopped)], started)
        results = [check_driver(self._ctx, driver, nvml_version), check_device_count(self._ctx, count)]
        gpus = self._enumerate(count, results)
        results += self._xid_results(gpus, xid_wait_ms, xid_window)
        for gpu in gpus:
            for name, check in GPU_CHECKS.items():
                results.append(self._guarded(name, check, gpu))
        for name, node_check in NODE_CHECKS.items():
            try:
                results += node_check(self._ctx, gpus)
            except nv.NVMLError as error:
                results.append(CheckResult(name, None, Status.FAIL, f"NVML error during the check: {error}"))
        return self._report(results, started, driver, nvml_version, tuple(g.identity for g in gpus))

    def _report(
        self,
        results: list[CheckResult],
        started: float,
        driver: str | None = None,
        nvml_version: str | None = None,
        gpus: tuple[GpuIdentity, ...] = (),
    ) -> Report:
        results.sort(key=lambda r: (-1 if r.gpu is None else r.gpu, CHECK_NAMES.index(r.check)))
        return Report(
            self.node, True, None, driver, nvml_version, gpus, tuple(results), (time.perf_counter() - started) * 1000.0
        )

    def _enumerate(self, count: int, results: list[CheckResult]) -> list[Gpu]:
        nv = self.nvml
        gpus = []
        for index in range(count):
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                identity = GpuIdentity(index, nv.nvmlDeviceGetName(handle), nv.nvmlDeviceGetUUID(handle))
            except nv.NVMLError as error:
                results.append(
                    CheckResult(
                        "device-access",
                        index,
                        Status.FAIL,
                        f"cannot read the GPU ({error}): it is lost or hung; drain the node and reset or reboot",
                    )
                )
                continue
            gpus.append(Gpu(identity, handle))
        return gpus

    def _guarded(self, name: str, check: GpuCheck, gpu: Gpu) -> CheckResult:
        try:
            return check(self._ctx, gpu)
        except self.nvml.NVMLError as error:
            return CheckResult(
                name, gpu.index, Status.FAIL, f"NVML error during the check: {error}; reset the GPU if it repeats"
            )

    def _xid_results(self, gpus: list[Gpu], wait_ms: int, window: str | None) -> list[CheckResult]:
        uuids = tuple(gpu.identity.uuid for gpu in gpus)
        if self._monitor is None or self._monitor.uuids != uuids:
            # The GPU set changed (or first pass): register afresh, keeping what was seen so far.
            history = self._monitor.history if self._monitor is not None else None
            self.close_monitor()
            self._monitor = XidMonitor(self.nvml, gpus, clock=self._clock, history=history)
            try:
                self._monitor.open()
            except self.nvml.NVMLError as error:
                self._monitor = None
                return [
                    CheckResult(
                        "xid", g.index, Status.WARN, f"cannot create an NVML event set ({error}): XIDs are not watched"
                    )
                    for g in gpus
                ]
        monitor = self._monitor
        try:
            monitor.drain(wait_ms)
        except self.nvml.NVMLError as error:
            return [CheckResult("xid", g.index, Status.FAIL, f"waiting for XID events failed: {error}") for g in gpus]
        words = window or f"in the last {self.config.xid_hold_seconds:g} s"
        return [check_xid(self._ctx, gpu, monitor, words) for gpu in gpus]

    def close_monitor(self) -> None:
        """Free the XID event set (a fresh one is registered at the next pass)."""
        if self._monitor is not None:
            # The GPU may be gone; the set dies with the process anyway.
            with contextlib.suppress(self.nvml.NVMLError):
                self._monitor.close()
            self._monitor = None
