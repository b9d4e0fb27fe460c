"""Shared helpers of the diag tests: build a fake NVML from a fault dict and run one pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aibrix_spec.components.diag import DiagConfig, FaultFile
from runtime_components.diag.fake_nvml import FakeNvml
from runtime_components.diag.report import Report, Status
from runtime_components.diag.session import DiagSession

REPO = Path(__file__).resolve().parents[2]
FAULTS_DIR = REPO / "examples" / "faults"


def run_pass(faults: dict[str, Any] | FaultFile, config: dict[str, Any] | None = None) -> Report:
    fault_file = faults if isinstance(faults, FaultFile) else FaultFile.model_validate(faults)
    settings = {"expectedGpuCount": fault_file.gpu_count, **(config or {})}
    with DiagSession(FakeNvml(fault_file), DiagConfig.model_validate(settings), node=fault_file.node) as session:
        return session.run_pass(xid_wait_ms=0)


def problems(report: Report) -> set[tuple[str, int | None, str]]:
    """(check, gpu, status) of every result that is not ok."""
    return {(r.check, r.gpu, r.status.label) for r in report.results if r.status is not Status.OK}


def result(report: Report, check: str, gpu: int | None) -> Any:
    matches = [r for r in report.results if r.check == check and r.gpu == gpu]
    assert len(matches) == 1, f"expected one {check} result for gpu {gpu}, got {matches}"
    return matches[0]
