"""The observed workload: request rate per (model, input bucket, output bucket) cell.

Two sources, one shape (``Workload``: cell -> requests/s):

* a workload file (JSON/YAML), documented in docs/optimizer.md::

      {"cells": [{"model": "llama-3-8b", "inputBucket": 512, "outputBucket": 128, "rps": 2.5}]}

* the gateway's counter ``aibrix_gateway_request_token_buckets_total{model, input_bucket,
  output_bucket}``. ``RateWindow`` keeps timestamped snapshots of the counters and turns them
  into rates over a sliding window: ``rate = (c(t_new) - c(t_old)) / (t_new - t_old)``, where
  ``t_old`` is the oldest snapshot inside the window. A counter that went down was reset (the
  gateway restarted), so its increase is its new value. Several gateways are summed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field, field_validator

from aibrix_spec._base import SpecModel
from aibrix_spec.token_buckets import BUCKETS
from runtime_components.optimizer.errors import InputFileError
from runtime_components.optimizer.files import load_model

__all__ = [
    "Cell",
    "Workload",
    "WorkloadCell",
    "WorkloadFile",
    "load_workload",
    "parse_gateway_counters",
    "RateWindow",
    "GATEWAY_COUNTER",
    "merge",
]

GATEWAY_COUNTER = "aibrix_gateway_request_token_buckets_total"

Cell = tuple[str, int, int]  # (model, input bucket, output bucket)
Workload = dict[Cell, float]  # requests per second


class WorkloadCell(SpecModel):
    model: str = Field(min_length=1, description="Model name.")
    input_bucket: int = Field(description="Input-token bucket (log2 grid).")
    output_bucket: int = Field(description="Output-token bucket (log2 grid).")
    rps: float = Field(ge=0, description="Requests per second in this cell.")

    @field_validator("input_bucket", "output_bucket")
    @classmethod
    def _on_grid(cls, value: int) -> int:
        if value not in BUCKETS:
            raise ValueError(f"{value} is not a log2 token bucket; expected one of {list(BUCKETS)}")
        return value

    @field_validator("rps")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("rps must be finite")
        return value


class WorkloadFile(SpecModel):
    cells: list[WorkloadCell] = Field(description="Observed request rates per bucket cell.")


def load_workload(path: str | Path) -> Workload:
    """Read a workload file; a cell listed twice is an error (it is ambiguous, not additive)."""
    parsed = load_model(path, WorkloadFile, what="workload")
    workload: Workload = {}
    for index, cell in enumerate(parsed.cells):
        key = (cell.model, cell.input_bucket, cell.output_bucket)
        if key in workload:
            raise InputFileError(
                str(path),
                f"cells[{index}] repeats model {cell.model!r}, inputBucket {cell.input_bucket}, "
                f"outputBucket {cell.output_bucket}",
                hint="list each cell once with its total rps",
            )
        workload[key] = cell.rps
    return workload


def parse_gateway_counters(text: str) -> dict[Cell, float]:
    """Counter values of the gateway's token-bucket histogram from Prometheus text.

    Samples whose bucket labels are not on the grid are skipped: they cannot be matched to
    any profile, and one bad label must not stop the optimizer.
    """
    counts: dict[Cell, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != GATEWAY_COUNTER:
                continue
            try:
                key = (
                    sample.labels["model"],
                    int(sample.labels["input_bucket"]),
                    int(sample.labels["output_bucket"]),
                )
            except (KeyError, ValueError):
                continue
            if key[1] in BUCKETS and key[2] in BUCKETS:
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


@dataclass
class _Snapshot:
    at: float
    counts: dict[Cell, float]


class RateWindow:
    """Sliding-window rates from periodic counter snapshots of one source (one gateway)."""

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._snapshots: deque[_Snapshot] = deque()

    def observe(self, at: float, counts: dict[Cell, float]) -> None:
        self._snapshots.append(_Snapshot(at, dict(counts)))
        # Keep the newest snapshot at or before the window start as the baseline.
        while len(self._snapshots) > 2 and self._snapshots[1].at <= at - self.window_seconds:
            self._snapshots.popleft()

    def rates(self) -> Workload | None:
        """Requests/s per cell over the window, or None before two snapshots exist."""
        if len(self._snapshots) < 2:
            return None
        old, new = self._snapshots[0], self._snapshots[-1]
        elapsed = new.at - old.at
        if elapsed <= 0:
            return None
        rates: Workload = {}
        for key, value in new.counts.items():
            before = old.counts.get(key, 0.0)
            increase = value - before if value >= before else value  # reset: counted from zero
            if increase > 0:
                rates[key] = increase / elapsed
        return rates


def merge(workloads: list[Workload]) -> Workload:
    """Sum rates of several sources (gateway replicas)."""
    total: Workload = {}
    for workload in workloads:
        for key, value in workload.items():
            total[key] = total.get(key, 0.0) + value
    return total
