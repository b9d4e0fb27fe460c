"""An in-process fake of the pynvml functions the checks call, driven by a fault file.

`FakeNvml(fault_file)` exposes the same function names and signatures as the `pynvml`
module, raises the same exception classes (`pynvml.NVMLError_NotSupported`,
`NVMLError_Timeout`, `NVMLError_GpuIsLost`, ...; built with `pynvml.NVMLError(code)` exactly as
pynvml's `_nvmlCheckReturn` does) and hands out pynvml's own constants, so the checks run
unchanged against it. Only the functions below exist: a check that calls anything else gets
an AttributeError naming the function, so the fake cannot silently drift from what is used.

Semantics kept from NVML: every device call before `nvmlInit` raises Uninitialized; a GPU
with `visible: false` is not counted and the others are renumbered; a `lost` GPU yields a
handle but every call on it raises GpuIsLost; ECC counters raise NotSupported while ECC is
disabled; each injected XID is delivered once, only to an event set that registered its GPU
for `nvmlEventTypeXidCriticalError`. One difference: `nvmlEventSetWait_v2` never sleeps; with
no event queued it raises Timeout at once (the mock-up models state, not time).
"""

from __future__ import annotations

import inspect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pynvml

from aibrix_spec.components.diag import FaultFile, GpuState

__all__ = ["FakeDevice", "FakeEventData", "FakeNvml"]

_CLOCK_REASON_BITS = {
    "gpu-idle": pynvml.nvmlClocksEventReasonGpuIdle,
    "sw-power-cap": pynvml.nvmlClocksEventReasonSwPowerCap,
    "hw-slowdown": pynvml.nvmlClocksEventReasonHwSlowdown,
    "sw-thermal": pynvml.nvmlClocksEventReasonSwThermalSlowdown,
    "hw-thermal": pynvml.nvmlClocksEventReasonHwThermalSlowdown,
    "power-brake": pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown,
}
_SUPPORTED_EVENTS = (
    pynvml.nvmlEventTypeSingleBitEccError | pynvml.nvmlEventTypeDoubleBitEccError | pynvml.nvmlEventTypeXidCriticalError
)


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)  # maps to the NVMLError_* subclass, as pynvml does


@dataclass(eq=False)
class FakeDevice:
    """The opaque handle the fake hands out (compared by identity, like a C pointer)."""

    index: int
    state: GpuState
    pending_xids: deque[int] = field(default_factory=deque)


@dataclass(frozen=True)
class FakeEventData:
    """Same fields as pynvml's c_nvmlEventData_t."""

    device: FakeDevice
    eventType: int  # noqa: N815 - pynvml's field name
    eventData: int  # noqa: N815
    gpuInstanceId: int = 0xFFFFFFFF  # noqa: N815
    computeInstanceId: int = 0xFFFFFFFF  # noqa: N815


@dataclass(eq=False)
class _FakeEventSet:
    registrations: dict[int, int] = field(default_factory=dict)  # id(device) -> event mask
    freed: bool = False


class FakeNvml:
    """pynvml's function surface over one `FaultFile`."""

    def __init__(self, faults: FaultFile) -> None:
        self.faults = faults
        self._initialised = 0
        gpus = [gpu for gpu in faults.resolved_gpus() if gpu.visible]
        self._devices = [FakeDevice(i, gpu, deque(gpu.xid_events)) for i, gpu in enumerate(gpus)]
        self.calls = 0  # counted so a benchmark can report NVML calls per pass

    def update_gpu(self, index: int, **fields: Any) -> None:
        """Change visible GPU `index`'s state between passes (GpuState field names); new XIDs are queued."""
        device = self._devices[index]
        device.state = GpuState.model_validate({**device.state.model_dump(), **fields})
        device.pending_xids.extend(fields.get("xid_events", ()))

    def __getattr__(self, name: str) -> Any:
        # Constants and exception classes come from pynvml itself; functions must be faked here.
        value = getattr(pynvml, name)
        if inspect.isfunction(value):
            raise AttributeError(f"the NVML fake does not implement {name}(); add it to FakeNvml")
        return value

    def _device(self, handle: FakeDevice, feature: str | None = None) -> GpuState:
        self.calls += 1
        if not self._initialised:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        if not isinstance(handle, FakeDevice):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if handle.state.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        if feature is not None and feature in handle.state.not_supported:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.state

    # -- library and system
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.faults.nvml == "library-missing":
            raise _error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        if self.faults.nvml == "driver-not-loaded":
            raise _error(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
        self._initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        if not self._initialised:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        self._initialised -= 1

    def _system(self) -> None:
        self.calls += 1
        if not self._initialised:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        self._system()
        return self.faults.driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:  # noqa: N802
        self._system()
        return self.faults.nvml_version

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._system()
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:  # noqa: N802
        self._system()
        if not 0 <= index < len(self._devices):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._devices[index]

    # -- identity
    def nvmlDeviceGetIndex(self, handle: FakeDevice) -> int:  # noqa: N802
        self._device(handle)
        return handle.index

    def nvmlDeviceGetName(self, handle: FakeDevice) -> str:  # noqa: N802
        return self._device(handle).name

    def nvmlDeviceGetUUID(self, handle: FakeDevice) -> str:  # noqa: N802
        return self._device(handle).uuid or ""

    # -- PCIe
    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: FakeDevice) -> int:  # noqa: N802
        return self._device(handle, "pcie").pcie.current_generation

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: FakeDevice) -> int:  # noqa: N802
        return self._device(handle, "pcie").pcie.max_generation

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: FakeDevice) -> int:  # noqa: N802
        return self._device(handle, "pcie").pcie.current_width

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: FakeDevice) -> int:  # noqa: N802
        return self._device(handle, "pcie").pcie.max_width

    # -- ECC, retired pages, remapped rows
    def nvmlDeviceGetEccMode(self, handle: FakeDevice) -> list[int]:  # noqa: N802
        mode = pynvml.NVML_FEATURE_ENABLED if self._device(handle, "ecc").ecc.enabled else pynvml.NVML_FEATURE_DISABLED
        return [mode, mode]

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeDevice, errorType: int, counterType: int) -> int:  # noqa: N802, N803
        ecc = self._device(handle, "ecc").ecc
        if not ecc.enabled:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        counters = {
            (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC): ecc.corrected_volatile,
            (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC): ecc.uncorrected_volatile,
            (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_AGGREGATE_ECC): ecc.corrected_aggregate,
            (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC): ecc.uncorrected_aggregate,
        }
        if (errorType, counterType) not in counters:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return counters[(errorType, counterType)]

    def nvmlDeviceGetRetiredPages(self, device: FakeDevice, sourceFilter: int) -> list[int]:  # noqa: N802, N803
        pages = self._device(device, "retired-pages").retired_pages
        counts = {
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS: pages.single_bit,
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR: pages.double_bit,
        }
        if sourceFilter not in counts:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return [0x4000_0000 + 0x1000 * (sourceFilter * 1000 + i) for i in range(counts[sourceFilter])]

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: FakeDevice) -> int:  # noqa: N802
        pending = self._device(device, "retired-pages").retired_pages.pending
        return int(pynvml.NVML_FEATURE_ENABLED if pending else pynvml.NVML_FEATURE_DISABLED)

    def nvmlDeviceGetRemappedRows(self, device: FakeDevice) -> tuple[int, int, int, int]:  # noqa: N802
        rows = self._device(device, "remapped-rows").remapped_rows
        return (rows.corrected, rows.uncorrected, int(rows.pending), int(rows.failed))

    # -- events
    def nvmlEventSetCreate(self) -> _FakeEventSet:  # noqa: N802
        self._system()
        return _FakeEventSet()

    def nvmlDeviceGetSupportedEventTypes(self, handle: FakeDevice) -> int:  # noqa: N802
        self._device(handle, "events")
        return int(_SUPPORTED_EVENTS)

    def nvmlDeviceRegisterEvents(self, handle: FakeDevice, eventTypes: int, eventSet: _FakeEventSet) -> None:  # noqa: N802, N803
        self._device(handle, "events")
        if eventSet.freed or eventTypes & ~_SUPPORTED_EVENTS:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        eventSet.registrations[id(handle)] = eventSet.registrations.get(id(handle), 0) | eventTypes

    def nvmlEventSetWait_v2(self, eventSet: _FakeEventSet, timeoutms: int) -> FakeEventData:  # noqa: N802, N803
        self._system()
        if eventSet.freed:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        for device in self._devices:
            mask = eventSet.registrations.get(id(device), 0)
            if mask & pynvml.nvmlEventTypeXidCriticalError and device.pending_xids:
                xid = device.pending_xids.popleft()
                return FakeEventData(device, pynvml.nvmlEventTypeXidCriticalError, xid)
        raise _error(pynvml.NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, eventSet: _FakeEventSet) -> None:  # noqa: N802, N803
        self._system()
        eventSet.freed = True

    # -- temperature, clocks, NVLink, power
    def nvmlDeviceGetTemperature(self, handle: FakeDevice, sensor: int) -> int:  # noqa: N802
        state = self._device(handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return state.temperature.current_c

    def nvmlDeviceGetTemperatureThreshold(self, handle: FakeDevice, threshold: int) -> int:  # noqa: N802
        temperature = self._device(handle, "temperature-thresholds").temperature
        if threshold == pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
            return temperature.slowdown_c
        if threshold == pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
            return temperature.shutdown_c
        raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def _clock_mask(self, handle: FakeDevice) -> int:
        mask = 0
        for reason in self._device(handle, "clocks-event-reasons").clocks_event_reasons:
            mask |= _CLOCK_REASON_BITS[reason]
        return mask

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeDevice) -> int:  # noqa: N802
        return self._clock_mask(handle)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeDevice) -> int:  # noqa: N802
        return self._clock_mask(handle)  # the same bits under the pre-rename symbol

    def nvmlDeviceGetNvLinkState(self, device: FakeDevice, link: int) -> int:  # noqa: N802
        nvlink = self._device(device, "nvlink").nvlink
        if nvlink.links == 0:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < nvlink.links:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(pynvml.NVML_FEATURE_DISABLED if link in nvlink.inactive else pynvml.NVML_FEATURE_ENABLED)

    def nvmlDeviceGetPowerUsage(self, handle: FakeDevice) -> int:  # noqa: N802
        return round(self._device(handle, "power").power.usage_w * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeDevice) -> int:  # noqa: N802
        return round(self._device(handle, "power").power.limit_w * 1000)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: FakeDevice) -> int:  # noqa: N802
        return round(self._device(handle, "power").power.default_limit_w * 1000)
