"""Node-level checks: the driver, the GPU count, and NVLink (which compares GPUs with each other).

NVML calls and verdicts:
- driver: nvmlSystemGetDriverVersion, nvmlSystemGetNVMLVersion. Older than
  `minDriverVersion` -> warn. (nvmlInit failures are judged by `judge_init_error`.)
- device-count: nvmlDeviceGetCount. Zero, or fewer than `expectedGpuCount` -> fail (a GPU fell
  off the bus or the driver did not bring it up); more than expected -> warn.
- nvlink: nvmlDeviceGetNvLinkState(handle, link) for link in 0..NVML_NVLINK_MAX_LINKS-1; a link
  that raises NotSupported/InvalidArgument does not exist. Every existing link down -> fail; fewer
  active links than `expectedNvlinks` or than another GPU of the same product on the node ->
  fail; no links at all -> ok (a PCIe GPU).
"""

from __future__ import annotations

from typing import Any

from runtime_components.diag.context import CheckContext, Gpu
from runtime_components.diag.report import CheckResult, Status

__all__ = ["check_device_count", "check_driver", "check_nvlink", "judge_init_error"]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def check_driver(ctx: CheckContext, driver: str, nvml_version: str) -> CheckResult:
    wanted = ctx.config.thresholds.min_driver_version
    values = {"nvml_loaded": 1.0}
    if wanted and _version_tuple(driver) < _version_tuple(wanted):
        return CheckResult(
            "driver",
            None,
            Status.WARN,
            f"driver {driver} is older than the required {wanted}: upgrade the driver (drain the node first)",
            values,
        )
    return CheckResult("driver", None, Status.OK, f"driver {driver}, NVML {nvml_version}", values)


def judge_init_error(nvml: Any, error: Exception) -> CheckResult:
    """A failed nvmlInit on a machine where the library exists: always a fail, with the likely fix."""
    advice = {
        "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded: check `lsmod | grep nvidia` and "
        "dmesg, reinstall or reload the driver, then reboot the node",
        "NVMLError_LibRmVersionMismatch": "NVML and the kernel driver have different versions (driver upgraded "
        "without a reboot): drain and reboot the node",
        "NVMLError_NoPermission": "no permission to open /dev/nvidia*: run the daemon with the NVIDIA runtime "
        "and access to the GPU devices",
    }
    hint = advice.get(type(error).__name__, "see dmesg for NVRM errors; reboot the node if it persists")
    return CheckResult("driver", None, Status.FAIL, f"nvmlInit failed ({error}): {hint}", {"nvml_loaded": 0.0})


def check_device_count(ctx: CheckContext, count: int) -> CheckResult:
    expected = ctx.config.expected_gpu_count
    values = {"count": float(count)}
    if expected is not None:
        values["expected"] = float(expected)
    if count == 0 or (expected is not None and count < expected):
        of = f" of {expected} expected" if expected is not None else ""
        return CheckResult(
            "device-count",
            None,
            Status.FAIL,
            f"NVML sees {count} GPU(s){of}: a GPU fell off the bus or failed to initialise; look for XID 79 "
            "in `dmesg`, drain the node and power-cycle it",
            values,
        )
    if expected is not None and count > expected:
        return CheckResult(
            "device-count",
            None,
            Status.WARN,
            f"NVML sees {count} GPUs, more than the {expected} expected: update expectedGpuCount for this pool",
            values,
        )
    return CheckResult(
        "device-count", None, Status.OK, f"{count} GPU(s)" + (" as expected" if expected else ""), values
    )


def _nvlink_states(ctx: CheckContext, gpu: Gpu) -> tuple[int, list[int]]:
    """(links that exist, links that are down)."""
    nv = ctx.nvml
    existing, down = 0, []
    for link in range(nv.NVML_NVLINK_MAX_LINKS):
        try:
            state = nv.nvmlDeviceGetNvLinkState(gpu.handle, link)
        except (nv.NVMLError_NotSupported, nv.NVMLError_InvalidArgument):
            continue
        existing += 1
        if state != nv.NVML_FEATURE_ENABLED:
            down.append(link)
    return existing, down


def check_nvlink(ctx: CheckContext, gpus: list[Gpu]) -> list[CheckResult]:
    states = {gpu.index: _nvlink_states(ctx, gpu) for gpu in gpus}
    best_by_product: dict[str, tuple[int, int]] = {}  # product -> (most active links, on which GPU)
    for gpu in gpus:
        existing, down = states[gpu.index]
        active = existing - len(down)
        if active > best_by_product.get(gpu.identity.name, (-1, -1))[0]:
            best_by_product[gpu.identity.name] = (active, gpu.index)
    expected = ctx.config.thresholds.expected_nvlinks
    results = []
    for gpu in gpus:
        existing, down = states[gpu.index]
        active = existing - len(down)
        values = {"links": float(existing), "active": float(active)}
        where = f" (down: {', '.join(map(str, down))})" if down else ""
        fix = "drain the node, inspect the NVLink bridge/baseboard; on NVSwitch systems check nvidia-fabricmanager"
        best, best_gpu = best_by_product[gpu.identity.name]
        if existing == 0:
            results.append(CheckResult("nvlink", gpu.index, Status.OK, "no NVLink on this GPU", values))
        elif active == 0:
            results.append(
                CheckResult(
                    "nvlink",
                    gpu.index,
                    Status.FAIL,
                    f"all {existing} NVLinks are down: multi-GPU traffic falls back to PCIe; {fix}",
                    values,
                )
            )
        elif expected is not None and active < expected:
            results.append(
                CheckResult(
                    "nvlink",
                    gpu.index,
                    Status.FAIL,
                    f"{active} of {expected} expected NVLinks active{where}; {fix}",
                    values,
                )
            )
        elif active < best:
            results.append(
                CheckResult(
                    "nvlink",
                    gpu.index,
                    Status.FAIL,
                    f"{active} NVLinks active but GPU {best_gpu} (same product) has {best}{where}; {fix}",
                    values,
                )
            )
        else:
            results.append(
                CheckResult("nvlink", gpu.index, Status.OK, f"{active} of {existing} NVLinks active", values)
            )
    return results
