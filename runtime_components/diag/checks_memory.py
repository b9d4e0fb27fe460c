"""GPU memory health: ECC counters, retired pages (pre-Ampere), remapped rows (Ampere and later).

NVML calls: nvmlDeviceGetEccMode, nvmlDeviceGetTotalEccErrors (corrected/uncorrected x
volatile/aggregate), nvmlDeviceGetRetiredPages (per cause), nvmlDeviceGetRetiredPagesPendingStatus,
nvmlDeviceGetRemappedRows -> (corrected, uncorrected, pending, failure).

Verdicts:
- ecc: uncorrected volatile > 0 -> fail; ECC disabled, corrected volatile >= threshold, or
  uncorrected aggregate > 0 -> warn.
- retired-pages: single + double >= retiredPagesFail -> fail; pending or any double-bit -> warn.
- remapped-rows: failure -> fail; pending -> warn.
"""

from __future__ import annotations

from runtime_components.diag.context import CheckContext, Gpu, not_supported
from runtime_components.diag.report import CheckResult, Status

__all__ = ["check_ecc", "check_remapped_rows", "check_retired_pages"]


def check_ecc(ctx: CheckContext, gpu: Gpu) -> CheckResult:
    nv, h, i = ctx.nvml, gpu.handle, gpu.index
    try:
        current, pending = nv.nvmlDeviceGetEccMode(h)
    except not_supported(ctx):
        return CheckResult("ecc", i, Status.OK, "ECC is not supported on this GPU: nothing to count")
    if current != nv.NVML_FEATURE_ENABLED:
        later = " (enabled after the next reset)" if pending == nv.NVML_FEATURE_ENABLED else ""
        return CheckResult(
            "ecc",
            i,
            Status.WARN,
            f"ECC is disabled{later}: memory errors go undetected; enable it with "
            f"`nvidia-smi -i {i} -e 1` and reset the GPU",
            {"enabled": 0},
        )
    counts = {
        name: float(nv.nvmlDeviceGetTotalEccErrors(h, error_type, counter))
        for name, error_type, counter in (
            ("corrected_volatile", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_VOLATILE_ECC),
            ("uncorrected_volatile", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC),
            ("corrected_aggregate", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_AGGREGATE_ECC),
            ("uncorrected_aggregate", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_AGGREGATE_ECC),
        )
    }
    values = {"enabled": 1.0, **counts}
    uncorrected_now = int(counts["uncorrected_volatile"])
    corrected_now = int(counts["corrected_volatile"])
    limit = ctx.config.thresholds.ecc_corrected_volatile_warn
    if uncorrected_now:
        return CheckResult(
            "ecc",
            i,
            Status.FAIL,
            f"{uncorrected_now} uncorrected ECC error(s) since the driver loaded: results from this GPU "
            "may be corrupt; drain the node, reset the GPU (`nvidia-smi -r`), replace it if errors return",
            values,
        )
    if corrected_now >= limit:
        return CheckResult(
            "ecc",
            i,
            Status.WARN,
            f"{corrected_now} corrected ECC errors since the driver loaded (warn at {limit}): memory is "
            "degrading; watch remapped rows / retired pages and plan a replacement",
            values,
        )
    if counts["uncorrected_aggregate"]:
        return CheckResult(
            "ecc",
            i,
            Status.WARN,
            f"{int(counts['uncorrected_aggregate'])} uncorrected ECC error(s) over the GPU's life, none since "
            "the driver loaded: check that the affected memory was remapped or retired",
            values,
        )
    return CheckResult(
        "ecc", i, Status.OK, f"ECC on, {corrected_now} corrected and 0 uncorrected since driver load", values
    )


def check_retired_pages(ctx: CheckContext, gpu: Gpu) -> CheckResult:
    nv, h, i = ctx.nvml, gpu.handle, gpu.index
    try:
        single = len(nv.nvmlDeviceGetRetiredPages(h, nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS))
        double = len(nv.nvmlDeviceGetRetiredPages(h, nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR))
        pending = nv.nvmlDeviceGetRetiredPagesPendingStatus(h) == nv.NVML_FEATURE_ENABLED
    except not_supported(ctx):
        return CheckResult(
            "retired-pages",
            i,
            Status.OK,
            "page retirement is not used by this GPU (Ampere and later remap rows instead)",
        )
    values = {"single_bit": float(single), "double_bit": float(double), "pending": float(pending)}
    total, limit = single + double, ctx.config.thresholds.retired_pages_fail
    if total >= limit:
        return CheckResult(
            "retired-pages",
            i,
            Status.FAIL,
            f"{total} pages retired ({single} single-bit, {double} double-bit; replace at {limit}): "
            "the GPU is out of healthy memory; drain the node and replace the GPU",
            values,
        )
    if pending:
        return CheckResult(
            "retired-pages",
            i,
            Status.WARN,
            "a page retirement is pending: drain the GPU and reset it (`nvidia-smi -r`) so the bad page is retired",
            values,
        )
    if double:
        return CheckResult(
            "retired-pages",
            i,
            Status.WARN,
            f"{double} page(s) retired after double-bit errors ({total} in all): retirement worked; "
            "watch the count and plan a replacement if it grows",
            values,
        )
    return CheckResult("retired-pages", i, Status.OK, f"{total} pages retired, none pending", values)


def check_remapped_rows(ctx: CheckContext, gpu: Gpu) -> CheckResult:
    nv, h, i = ctx.nvml, gpu.handle, gpu.index
    try:
        corrected, uncorrected, pending, failure = nv.nvmlDeviceGetRemappedRows(h)
    except not_supported(ctx):
        return CheckResult(
            "remapped-rows",
            i,
            Status.OK,
            "row remapping is not supported (pre-Ampere GPU: see retired-pages)",
        )
    values = {
        "corrected": float(corrected),
        "uncorrected": float(uncorrected),
        "pending": float(bool(pending)),
        "failed": float(bool(failure)),
    }
    if failure:
        return CheckResult(
            "remapped-rows",
            i,
            Status.FAIL,
            "row remapping failed (no spare rows left in a memory bank): the GPU must be replaced (RMA); "
            "drain the node",
            values,
        )
    if pending:
        return CheckResult(
            "remapped-rows",
            i,
            Status.WARN,
            "a row remap is pending: drain the GPU and reset it (`nvidia-smi -r`) to apply it",
            values,
        )
    return CheckResult(
        "remapped-rows",
        i,
        Status.OK,
        f"{corrected + uncorrected} rows remapped ({uncorrected} for uncorrected errors), none pending",
        values,
    )
