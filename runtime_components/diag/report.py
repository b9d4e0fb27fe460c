"""Check results and the node report: statuses, exit codes, JSON and the operator's text view.

Every check yields `CheckResult`s (one per GPU, or one for the node). A `Report` collects one
pass. Its status is the worst result's, or `no-nvml` when NVML could not be loaded at all; the
CLI's exit code follows from it (`EXIT_CODES`).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EXIT_CODES",
    "EXIT_NO_NVML",
    "EXIT_USAGE",
    "CheckResult",
    "GpuIdentity",
    "Report",
    "Status",
]


class Status(enum.IntEnum):
    """Severity of one result; ordered so that max() gives the worst."""

    OK = 0
    WARN = 1
    FAIL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


EXIT_NO_NVML = 3  #: NVML (the library) is not present: a node without NVIDIA GPUs, not a fault
EXIT_USAGE = 4  #: bad command line, config file or fault file
EXIT_CODES = {"ok": 0, "warn": 1, "fail": 2, "no-nvml": EXIT_NO_NVML}


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on one GPU (gpu None: a node-level check)."""

    check: str
    gpu: int | None
    status: Status
    message: str
    values: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "gpu": self.gpu,
            "status": self.status.label,
            "message": self.message,
            "values": dict(sorted(self.values.items())),
        }


@dataclass(frozen=True)
class GpuIdentity:
    """What identifies a GPU to an operator."""

    index: int
    name: str
    uuid: str


@dataclass(frozen=True)
class Report:
    """One diagnostic pass over a node."""

    node: str
    nvml_available: bool
    nvml_error: str | None = None
    driver_version: str | None = None
    nvml_version: str | None = None
    gpus: tuple[GpuIdentity, ...] = ()
    results: tuple[CheckResult, ...] = ()
    duration_ms: float = 0.0

    @property
    def status(self) -> str:
        """`ok`, `warn`, `fail`, or `no-nvml`."""
        if not self.nvml_available:
            return "no-nvml"
        return max((r.status for r in self.results), default=Status.OK).label

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def counts(self) -> dict[str, int]:
        counts = {s.label: 0 for s in Status}
        for result in self.results:
            counts[result.status.label] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "status": self.status,
            "exitCode": self.exit_code,
            "nvml": {
                "available": self.nvml_available,
                "error": self.nvml_error,
                "driverVersion": self.driver_version,
                "nvmlVersion": self.nvml_version,
            },
            "counts": self.counts(),
            "gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid} for g in self.gpus],
            "checks": [r.to_json() for r in self.results],
            "durationMs": round(self.duration_ms, 3),
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def render_text(self, *, verbose: bool = False) -> str:
        """The operator's view: a headline, then every warn/fail (all results with verbose)."""
        if not self.nvml_available:
            return (
                f"aibrix-diag on node {self.node}: NO-NVML (exit {self.exit_code})\n"
                f"  NVML could not be loaded: {self.nvml_error}\n"
                "  This node has no NVIDIA driver visible to this process: nothing was checked.\n"
                "  On a GPU node, run the container with the NVIDIA runtime (or the GPU operator's\n"
                "  toolkit) so libnvidia-ml.so.1 is mounted.\n"
            )
        counts = self.counts()
        lines = [
            f"aibrix-diag on node {self.node}: {self.status.upper()} (exit {self.exit_code}) - "
            f"{counts['fail']} fail, {counts['warn']} warn, {counts['ok']} ok; "
            + (f"driver {self.driver_version}, " if self.driver_version else "")
            + f"{len(self.gpus)} GPU(s) readable, {self.duration_ms:.1f} ms",
        ]
        shown = [r for r in self.results if verbose or r.status is not Status.OK]
        shown.sort(key=lambda r: (-r.status, -1 if r.gpu is None else r.gpu, r.check))
        for result in shown:
            where = "node " if result.gpu is None else f"gpu {result.gpu}"
            lines.append(f"  {result.status.label.upper():4}  {where:6} {result.check:14} {result.message}")
        if not verbose and len(shown) < len(self.results):
            lines.append(f"  ({len(self.results) - len(shown)} ok results hidden; --verbose lists them)")
        return "\n".join(lines) + "\n"
