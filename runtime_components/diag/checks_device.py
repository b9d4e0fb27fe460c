"""Per-GPU link, thermal, clock and power checks.

NVML calls and verdicts:
- pcie: nvmlDeviceGetCurr/MaxPcieLinkGeneration, nvmlDeviceGetCurr/MaxPcieLinkWidth. Width
  below max -> fail (a lane-degraded link, bandwidth scales with width). Generation below max
  -> warn, unless the GPU reports the `GpuIdle` clock reason (idle GPUs downshift to save power).
- temperature: nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU) and
  nvmlDeviceGetTemperatureThreshold(SLOWDOWN / SHUTDOWN). At or above slowdown -> fail
  (hardware halves clocks); within `temperatureMarginC` of it -> warn.
- clocks: nvmlDeviceGetCurrentClocksEventReasons (falling back to the deprecated
  ...ThrottleReasons on drivers without it). HwSlowdown, HwThermalSlowdown, HwPowerBrakeSlowdown
  -> fail; SwThermalSlowdown -> warn; SwPowerCap is normal under load -> ok with a note.
- power: nvmlDeviceGetPowerUsage / nvmlDeviceGetEnforcedPowerLimit /
  nvmlDeviceGetPowerManagementDefaultLimit (milliwatts). usage > limit x powerFailFraction -> fail;
  usage >= limit x powerWarnFraction, or limit < default x powerLimitLoweredFraction -> warn.
"""

from __future__ import annotations

from runtime_components.diag.context import CheckContext, Gpu, not_supported
from runtime_components.diag.report import CheckResult, Status

__all__ = ["check_clocks", "check_pcie", "check_power", "check_temperature", "clock_reason_names"]


def _is_idle(ctx: CheckContext, gpu: Gpu) -> bool | None:
    try:
        reasons = _clock_reasons(ctx, gpu)
    except not_supported(ctx):
        return None
    return bool(reasons & ctx.nvml.nvmlClocksEventReasonGpuIdle)


def check_pcie(ctx: CheckContext, gpu: Gpu) -> CheckResult:
    nv, h, i = ctx.nvml, gpu.handle, gpu.index
    try:
        gen, max_gen = nv.nvmlDeviceGetCurrPcieLinkGeneration(h), nv.nvmlDeviceGetMaxPcieLinkGeneration(h)
        width, max_width = nv.nvmlDeviceGetCurrPcieLinkWidth(h), nv.nvmlDeviceGetMaxPcieLinkWidth(h)
    except not_supported(ctx):
        return CheckResult("pcie", i, Status.OK, "PCIe link state is not reported for this GPU")
    values = {
        "generation": float(gen),
        "max_generation": float(max_gen),
        "width": float(width),
        "max_width": float(max_width),
    }
    link = f"Gen{gen} x{width} of Gen{max_gen} x{max_width}"
    if width < max_width:
        return CheckResult(
            "pcie",
            i,
            Status.FAIL,
            f"PCIe link degraded to {link}: host transfers run at {width / max_width:.0%} bandwidth; "
            "drain the node, reseat the GPU/riser and check the slot, then reboot",
            values,
        )
    if gen < max_gen:
        idle = _is_idle(ctx, gpu)
        if idle:
            return CheckResult("pcie", i, Status.OK, f"PCIe {link}: idle power saving (normal)", values)
        maybe = " (this GPU does not say whether it is idle: idle GPUs downshift)" if idle is None else ""
        return CheckResult(
            "pcie",
            i,
            Status.WARN,
            f"PCIe link trained below its generation while busy: {link}{maybe}; check the BIOS PCIe "
            "speed setting and the riser/retimer",
            values,
        )
    return CheckResult("pcie", i, Status.OK, f"PCIe {link}", values)


def check_temperature(ctx: CheckContext, gpu: Gpu) -> CheckResult:
    nv, h, i = ctx.nvml, gpu.handle, gpu.index
    current = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
    try:
        slowdown = nv.nvmlDeviceGetTemperatureThreshold(h, nv.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
        shutdown = nv.nvmlDeviceGetTemperatureThreshold(h, nv.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN)
    except not_supported(ctx):
        return CheckResult(
            "temperature",
            i,
            Status.OK,
            f"{current} C (this GPU reports no slowdown/shutdown thresholds)",
            {"celsius": float(current)},
        )
    values = {"celsius": float(current), "slowdown_celsius": float(slowdown), "shutdown_celsius": float(shutdown)}
    cooling = "check fans, airflow, inlet temperature and the liquid-cooling loop"
    if current >= shutdown:
        return CheckResult(
            "temperature",
            i,
            Status.FAIL,
            f"{current} C is at or above the shutdown threshold {shutdown} C: the GPU will power off; "
            f"drain the node and {cooling}",
            values,
        )
    if current >= slowdown:
        return CheckResult(
            "temperature",
            i,
            Status.FAIL,
            f"{current} C is at or above the slowdown threshold {slowdown} C: hardware halves clocks; {cooling}",
            values,
        )
    margin = ctx.config.thresholds.temperature_margin_c
    if current >= slowdown - margin:
        return CheckResult(
            "temperature",
            i,
            Status.WARN,
            f"{current} C is within {margin} C of the slowdown threshold {slowdown} C; {cooling}",
            values,
        )
    return CheckResult(
        "temperature", i, Status.OK, f"{current} C (slowdown {slowdown} C, shutdown {shutdown} C)", values
    )


def _clock_reasons(ctx: CheckContext, gpu: Gpu) -> int:
    nv = ctx.nvml
    try:
        return int(nv.nvmlDeviceGetCurrentClocksEventReasons(gpu.handle))
    except nv.NVMLError_FunctionNotFound:  # drivers before the rename only have the old name
        return int(nv.nvmlDeviceGetCurrentClocksThrottleReasons(gpu.handle))


def clock_reason_names(ctx: CheckContext, mask: int) -> list[str]:
    """The fault-file spelling of every reason bit set in `mask`."""
    nv = ctx.nvml
    bits = (
        ("gpu-idle", nv.nvmlClocksEventReasonGpuIdle),
        ("sw-power-cap", nv.nvmlClocksEventReasonSwPowerCap),
        ("hw-slowdown", nv.nvmlClocksEventReasonHwSlowdown),
        ("sw-thermal", nv.nvmlClocksEventReasonSwThermalSlowdown),
        ("hw-thermal", nv.nvmlClocksEventReasonHwThermalSlowdown),
        ("power-brake", nv.nvmlClocksEventReasonHwPowerBrakeSlowdown),
    )
    return [name for name, bit in bits if mask & bit]


_HW_ADVICE = {
    "hw-slowdown": "hardware slowdown (over-temperature, power brake or over-current)",
    "hw-thermal": "hardware thermal slowdown: check cooling",
    "power-brake": "external power brake: check the node's power supplies and the rack's power budget",
}


def check_clocks(ctx: CheckContext, gpu: Gpu) -> CheckResult:
    i = gpu.index
    try:
        mask = _clock_reasons(ctx, gpu)
    except not_supported(ctx):
        return CheckResult("clocks", i, Status.OK, "clock event reasons are not reported for this GPU")
    names = clock_reason_names(ctx, mask)
    values = {"reasons_mask": float(mask)}
    hardware = [name for name in names if name in _HW_ADVICE]
    if hardware:
        advice = "; ".join(_HW_ADVICE[name] for name in hardware)
        return CheckResult(
            "clocks",
            i,
            Status.FAIL,
            f"clocks cut by hardware ({', '.join(hardware)}): {advice}; drain if it persists",
            values,
        )
    if "sw-thermal" in names:
        return CheckResult(
            "clocks",
            i,
            Status.WARN,
            "the driver is lowering clocks to stay under the GPU's maximum operating temperature "
            "(sw-thermal): improve cooling",
            values,
        )
    if "sw-power-cap" in names:
        return CheckResult("clocks", i, Status.OK, "clocks limited by the power cap (normal at full load)", values)
    return CheckResult("clocks", i, Status.OK, "no clock slowdown" + (" (idle)" if "gpu-idle" in names else ""), values)


def check_power(ctx: CheckContext, gpu: Gpu) -> CheckResult:
    nv, h, i = ctx.nvml, gpu.handle, gpu.index
    try:
        usage_w = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
        limit_w = nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
    except not_supported(ctx):
        return CheckResult("power", i, Status.OK, "power draw is not reported for this GPU")
    try:
        default_w: float | None = nv.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000.0
    except not_supported(ctx):
        default_w = None
    values = {"watts": usage_w, "limit_watts": limit_w}
    if default_w is not None:
        values["default_limit_watts"] = default_w
    t = ctx.config.thresholds
    if usage_w > limit_w * t.power_fail_fraction:
        return CheckResult(
            "power",
            i,
            Status.FAIL,
            f"draws {usage_w:.0f} W, more than {t.power_fail_fraction:.2f}x its {limit_w:.0f} W limit: power "
            "regulation or the sensor is faulty; drain, reset the GPU, replace it if this persists",
            values,
        )
    if usage_w >= limit_w * t.power_warn_fraction:
        return CheckResult(
            "power",
            i,
            Status.WARN,
            f"draws {usage_w:.0f} W at its {limit_w:.0f} W limit: clocks are power-capped; check the limit "
            "and the workload's batch size",
            values,
        )
    if default_w is not None and limit_w < default_w * t.power_limit_lowered_fraction:
        return CheckResult(
            "power",
            i,
            Status.WARN,
            f"enforced power limit {limit_w:.0f} W is below the board default {default_w:.0f} W: it was capped "
            f"(`nvidia-smi -pl`) or the chassis limits power; restore with `nvidia-smi -i {i} -pl {default_w:.0f}`",
            values,
        )
    return CheckResult("power", i, Status.OK, f"{usage_w:.0f} W of {limit_w:.0f} W", values)
