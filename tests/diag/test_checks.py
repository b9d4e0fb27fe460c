"""Each check's verdicts, table-driven through the fault-file mock-up (edges the examples skip)."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest

from aibrix_spec.components.diag import DiagConfig, FaultFile
from runtime_components.diag.fake_nvml import FakeNvml
from runtime_components.diag.session import DiagSession

from .helpers import problems, result, run_pass

# (id, GPU-0 override, node-level fault fields, config, check, gpu, status, message fragment)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], str, int | None, str, str]] = [
    ("driver-ok", {}, {}, {}, "driver", None, "ok", "driver 550.90.07"),
    (
        "driver-older-than-required",
        {},
        {"driverVersion": "535.104.05"},
        {"thresholds": {"minDriverVersion": "550.54"}},
        "driver",
        None,
        "warn",
        "older than the required 550.54",
    ),
    (
        "driver-newer-than-required",
        {},
        {"driverVersion": "560.1"},
        {"thresholds": {"minDriverVersion": "550.54"}},
        "driver",
        None,
        "ok",
        "driver 560.1",
    ),
    ("more-gpus-than-expected", {}, {}, {"expectedGpuCount": 4}, "device-count", None, "warn", "more than the 4"),
    ("no-gpus", {}, {"gpuCount": 0}, {"expectedGpuCount": None}, "device-count", None, "fail", "sees 0 GPU"),
    (
        "pcie-gen-down-but-idle",
        {"pcie": {"currentGeneration": 1}, "clocksEventReasons": ["gpu-idle"]},
        {},
        {},
        "pcie",
        0,
        "ok",
        "idle power saving",
    ),
    (
        "pcie-gen-down-idle-unknown",
        {"pcie": {"currentGeneration": 4}, "notSupported": ["clocks-event-reasons"]},
        {},
        {},
        "pcie",
        0,
        "warn",
        "does not say whether it is idle",
    ),
    ("pcie-not-reported", {"notSupported": ["pcie"]}, {}, {}, "pcie", 0, "ok", "not reported"),
    ("ecc-unsupported", {"notSupported": ["ecc"]}, {}, {}, "ecc", 0, "ok", "not supported"),
    (
        "ecc-corrected-below-threshold",
        {"ecc": {"correctedVolatile": 999, "correctedAggregate": 999}},
        {},
        {},
        "ecc",
        0,
        "ok",
        "999 corrected",
    ),
    (
        "ecc-corrected-threshold-configurable",
        {"ecc": {"correctedVolatile": 10, "correctedAggregate": 10}},
        {},
        {"thresholds": {"eccCorrectedVolatileWarn": 10}},
        "ecc",
        0,
        "warn",
        "warn at 10",
    ),
    (
        "ecc-uncorrected-only-in-the-past",
        {"ecc": {"uncorrectedAggregate": 3}},
        {},
        {},
        "ecc",
        0,
        "warn",
        "over the GPU's life",
    ),
    (
        "retired-pages-double-bit",
        {"notSupported": ["remapped-rows"], "retiredPages": {"doubleBit": 2}},
        {},
        {},
        "retired-pages",
        0,
        "warn",
        "2 page(s) retired after double-bit",
    ),
    (
        "retired-pages-under-limit",
        {"notSupported": ["remapped-rows"], "retiredPages": {"singleBit": 59}},
        {},
        {},
        "retired-pages",
        0,
        "ok",
        "59 pages retired",
    ),
    (
        "retired-pages-limit-configurable",
        {"notSupported": ["remapped-rows"], "retiredPages": {"singleBit": 5}},
        {},
        {"thresholds": {"retiredPagesFail": 5}},
        "retired-pages",
        0,
        "fail",
        "replace at 5",
    ),
    ("remapped-rows-unsupported", {"notSupported": ["remapped-rows"]}, {}, {}, "remapped-rows", 0, "ok", "pre-Ampere"),
    (
        "remapped-rows-done",
        {"remappedRows": {"corrected": 2, "uncorrected": 1}},
        {},
        {},
        "remapped-rows",
        0,
        "ok",
        "3 rows remapped (1 for uncorrected",
    ),
    (
        "temperature-at-shutdown",
        {"temperature": {"currentC": 92}},
        {},
        {},
        "temperature",
        0,
        "fail",
        "shutdown threshold 92 C",
    ),
    (
        "temperature-margin-configurable",
        {"temperature": {"currentC": 80}},
        {},
        {"thresholds": {"temperatureMarginC": 10}},
        "temperature",
        0,
        "warn",
        "within 10 C",
    ),
    (
        "temperature-no-thresholds",
        {
            "temperature": {"currentC": 99, "slowdownC": 100, "shutdownC": 110},
            "notSupported": ["temperature-thresholds"],
        },
        {},
        {},
        "temperature",
        0,
        "ok",
        "no slowdown/shutdown thresholds",
    ),
    ("clocks-hw-slowdown", {"clocksEventReasons": ["hw-slowdown"]}, {}, {}, "clocks", 0, "fail", "hw-slowdown"),
    ("clocks-power-cap-is-normal", {"clocksEventReasons": ["sw-power-cap"]}, {}, {}, "clocks", 0, "ok", "power cap"),
    ("clocks-idle", {"clocksEventReasons": ["gpu-idle"]}, {}, {}, "clocks", 0, "ok", "(idle)"),
    ("power-at-limit", {"power": {"usageW": 695}}, {}, {}, "power", 0, "warn", "at its 700 W limit"),
    ("power-not-reported", {"notSupported": ["power"]}, {}, {}, "power", 0, "ok", "not reported"),
    (
        "nvlink-all-down",
        {"nvlink": {"links": 4, "inactive": [0, 1, 2, 3]}},
        {},
        {},
        "nvlink",
        0,
        "fail",
        "all 4 NVLinks are down",
    ),
    (
        "nvlink-fewer-than-expected",
        {},
        {},
        {"thresholds": {"expectedNvlinks": 24}},
        "nvlink",
        0,
        "fail",
        "18 of 24 expected",
    ),
    ("nvlink-pcie-gpu", {"nvlink": {"links": 0}}, {"gpuCount": 1}, {}, "nvlink", 0, "ok", "no NVLink"),
    ("xid-unknown-code-warns", {"xidEvents": [999]}, {}, {}, "xid", 0, "warn", "XID 999 (see NVIDIA XID"),
    (
        "xid-fail-codes-configurable",
        {"xidEvents": [13]},
        {},
        {"thresholds": {"xidFailCodes": [13]}},
        "xid",
        0,
        "fail",
        "XID 13",
    ),
    ("xid-events-unsupported", {"notSupported": ["events"]}, {}, {}, "xid", 0, "ok", "XIDs not watched"),
]


@pytest.mark.parametrize(
    ("gpu0", "node", "config", "check", "gpu", "status", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_check_verdict(
    gpu0: dict[str, Any],
    node: dict[str, Any],
    config: dict[str, Any],
    check: str,
    gpu: int | None,
    status: str,
    fragment: str,
) -> None:
    faults = {**node, "gpus": [{"index": 0, **gpu0}] if gpu0 else []}
    report = run_pass(faults, config)
    verdict = result(report, check, gpu)
    assert (verdict.status.label, fragment in verdict.message) == (status, True), verdict.message


def test_healthy_default_node_has_no_warnings() -> None:
    report = run_pass({})
    assert (problems(report), report.status, report.exit_code) == (set(), "ok", 0)
    assert len(report.gpus) == 8


def test_nvlink_compares_gpus_of_the_same_product_only() -> None:
    # Two products on one node: a 4-link GPU is not "short" next to 18-link ones.
    report = run_pass({"gpuCount": 2, "gpus": [{"index": 1, "name": "Other GPU", "nvlink": {"links": 4}}]})
    assert problems(report) == set()


def test_nvlink_peer_comparison_names_the_better_gpu() -> None:
    report = run_pass({"gpuCount": 2, "gpus": [{"index": 0, "nvlink": {"inactive": [3]}}]})
    assert result(report, "nvlink", 0).message.startswith("17 NVLinks active but GPU 1 (same product) has 18")


def test_lost_gpu_does_not_hide_the_others() -> None:
    report = run_pass(
        {
            "gpus": [
                {"index": 1, "lost": True},
                {"index": 4, "ecc": {"uncorrectedVolatile": 1, "uncorrectedAggregate": 1}},
            ]
        }
    )
    assert problems(report) == {("device-access", 1, "fail"), ("ecc", 4, "fail")}
    assert [g.index for g in report.gpus] == [0, 2, 3, 4, 5, 6, 7]


def test_values_carry_the_readings() -> None:
    report = run_pass({"gpus": [{"index": 2, "temperature": {"currentC": 61}, "power": {"usageW": 512.5}}]})
    assert result(report, "temperature", 2).values["celsius"] == 61
    assert result(report, "power", 2).values["watts"] == 512.5


class OldDriverNvml(FakeNvml):
    """A driver from before the ClocksEvent rename: only the ThrottleReasons symbol exists."""

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:  # noqa: N802
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)


def test_clock_reasons_fall_back_to_the_throttle_reasons_name() -> None:
    faults = FaultFile.model_validate({"gpuCount": 1, "gpus": [{"index": 0, "clocksEventReasons": ["power-brake"]}]})
    with DiagSession(OldDriverNvml(faults), DiagConfig(expected_gpu_count=1), node="n") as session:
        report = session.run_pass(xid_wait_ms=0)
    assert result(report, "clocks", 0).message.startswith("clocks cut by hardware (power-brake)")


class FlakyNvml(FakeNvml):
    """NVML answers Unknown Error for one call: only that check on that GPU fails."""

    def nvmlDeviceGetRemappedRows(self, device: Any) -> tuple[int, int, int, int]:  # noqa: N802
        if device.index == 3:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
        return super().nvmlDeviceGetRemappedRows(device)


def test_an_nvml_error_inside_a_check_fails_only_that_check() -> None:
    with DiagSession(FlakyNvml(FaultFile()), DiagConfig(expected_gpu_count=8), node="n") as session:
        report = session.run_pass(xid_wait_ms=0)
    assert problems(report) == {("remapped-rows", 3, "fail")}
    assert result(report, "remapped-rows", 3).message.startswith("NVML error during the check: Unknown Error")
