"""Fixed-bucket latency and size histograms, kept inside the engine core.

Where it sits: ``EngineCore`` observes every request's TTFT, inter-token latency, e2e
latency, queue/prefill/decode time and token counts into these, so its ``stats()`` snapshot
holds exactly what vLLM's ``/metrics`` shows, in bounded memory however long a run lasts.
The HTTP server renders them as Prometheus histograms (``metrics.py``).

Bucket bounds are vLLM's (``vllm/v1/metrics/loggers.py``): TTFT, per-token latency and
request-phase latency buckets as listed below; token-count histograms use vLLM's 1-2-5
series up to ``max_model_len``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "TTFT_BUCKETS",
    "TOKEN_LATENCY_BUCKETS",
    "REQUEST_LATENCY_BUCKETS",
    "one_two_five_buckets",
    "Histogram",
    "HistogramSnapshot",
]

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TOKEN_LATENCY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def one_two_five_buckets(maximum: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to ``maximum`` (vLLM's token-count buckets).

    >>> one_two_five_buckets(100)
    (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
    """
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > maximum:
                return tuple(out)
            out.append(float(value))
        exponent += 1


@dataclass(frozen=True)
class HistogramSnapshot:
    """Per-bucket (non-cumulative) counts; the last entry counts values above every bound."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs in Prometheus order, ending with ``+Inf``."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts):
            running += n
            out.append((repr(float(bound)), running))
        out.append(("+Inf", self.count))
        return out


class Histogram:
    """Counts observations into fixed upper bounds (``value <= bound``, as Prometheus does)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram bounds must be strictly increasing, got {list(bounds)}")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self._counts[:-1]), self.total, self.count)
