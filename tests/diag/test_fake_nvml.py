"""The NVML fake keeps pynvml's contract: names, return shapes, exception classes, event semantics."""

from __future__ import annotations

import inspect

import pynvml
import pytest

from aibrix_spec.components.diag import FaultFile
from runtime_components.diag.fake_nvml import FakeNvml


def fake(**faults: object) -> FakeNvml:
    nv = FakeNvml(FaultFile.model_validate(faults))
    if faults.get("nvml", "present") == "present":
        nv.nvmlInit()
    return nv


def test_every_faked_function_exists_in_pynvml_with_the_same_parameters() -> None:
    faked = [name for name, _ in inspect.getmembers(FakeNvml, inspect.isfunction) if name.startswith("nvml")]
    assert len(faked) >= 30
    for name in faked:
        real = inspect.signature(getattr(pynvml, name))
        mine = inspect.signature(getattr(FakeNvml, name))
        assert list(mine.parameters)[1:] == list(real.parameters), name


def test_constants_and_exceptions_are_pynvml_s_own() -> None:
    nv = fake()
    assert nv.NVMLError_NotSupported is pynvml.NVMLError_NotSupported
    assert nv.nvmlEventTypeXidCriticalError == pynvml.nvmlEventTypeXidCriticalError


def test_functions_not_faked_are_refused_by_name() -> None:
    with pytest.raises(AttributeError, match=r"does not implement nvmlDeviceGetFanSpeed\(\)"):
        fake().nvmlDeviceGetFanSpeed  # noqa: B018


@pytest.mark.parametrize(
    ("nvml_state", "exception"),
    [("library-missing", pynvml.NVMLError_LibraryNotFound), ("driver-not-loaded", pynvml.NVMLError_DriverNotLoaded)],
)
def test_init_failures_raise_pynvml_classes(nvml_state: str, exception: type[Exception]) -> None:
    with pytest.raises(exception):
        fake(nvml=nvml_state).nvmlInit()


def test_calls_before_init_raise_uninitialized() -> None:
    nv = FakeNvml(FaultFile())
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nv.nvmlDeviceGetCount()


def test_invisible_gpus_are_not_counted_and_the_rest_renumbered() -> None:
    nv = fake(gpuCount=4, gpus=[{"index": 1, "visible": False}])
    uuids = [nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i)) for i in range(nv.nvmlDeviceGetCount())]
    assert uuids == ["GPU-mock-mock-node-0", "GPU-mock-mock-node-2", "GPU-mock-mock-node-3"]


def test_return_shapes_match_pynvml() -> None:
    nv = fake(gpus=[{"index": 0, "remappedRows": {"corrected": 2, "pending": True}, "power": {"usageW": 123.4}}])
    h = nv.nvmlDeviceGetHandleByIndex(0)
    assert nv.nvmlDeviceGetRemappedRows(h) == (2, 0, 1, 0)
    assert nv.nvmlDeviceGetEccMode(h) == [pynvml.NVML_FEATURE_ENABLED, pynvml.NVML_FEATURE_ENABLED]
    assert nv.nvmlDeviceGetPowerUsage(h) == 123400  # milliwatts
    assert isinstance(nv.nvmlDeviceGetName(h), str)


def test_ecc_counters_are_unsupported_while_ecc_is_off() -> None:
    nv = fake(gpus=[{"index": 0, "ecc": {"enabled": False}}])
    h = nv.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetTotalEccErrors(h, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)


def test_lost_gpu_raises_gpu_is_lost_on_every_call() -> None:
    nv = fake(gpus=[{"index": 0, "lost": True}])
    h = nv.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nv.nvmlDeviceGetName(h)


def test_xid_events_are_delivered_once_and_only_to_registered_gpus() -> None:
    nv = fake(gpuCount=2, gpus=[{"index": 0, "xidEvents": [79]}, {"index": 1, "xidEvents": [13, 48]}])
    event_set = nv.nvmlEventSetCreate()
    second = nv.nvmlDeviceGetHandleByIndex(1)
    nv.nvmlDeviceRegisterEvents(second, pynvml.nvmlEventTypeXidCriticalError, event_set)
    delivered = []
    for _ in range(5):
        try:
            data = nv.nvmlEventSetWait_v2(event_set, 100)
        except pynvml.NVMLError_Timeout:
            break
        delivered.append((nv.nvmlDeviceGetIndex(data.device), data.eventType, data.eventData))
    assert delivered == [(1, pynvml.nvmlEventTypeXidCriticalError, 13), (1, pynvml.nvmlEventTypeXidCriticalError, 48)]
    with pytest.raises(pynvml.NVMLError_Timeout):
        nv.nvmlEventSetWait_v2(event_set, 0)
    nv.nvmlEventSetFree(event_set)


@pytest.mark.parametrize(("link", "exception"), [(18, pynvml.NVMLError_InvalidArgument), (0, None)])
def test_nvlink_state_per_link(link: int, exception: type[Exception] | None) -> None:
    nv = fake(gpus=[{"index": 0, "nvlink": {"inactive": [0]}}])
    h = nv.nvmlDeviceGetHandleByIndex(0)
    if exception is None:
        assert nv.nvmlDeviceGetNvLinkState(h, link) == pynvml.NVML_FEATURE_DISABLED
    else:
        with pytest.raises(exception):
            nv.nvmlDeviceGetNvLinkState(h, link)
