"""Finding the highest request rate that still meets the SLO, for one bucket cell.

Shared by the roofline deriver (each probe is a discrete-event simulation) and the
profiler (each probe is real traffic against an endpoint). Assumes monotonicity: if the
SLO holds at rate r it holds at any lower rate. Steps:

1. bracket: probe ``start``; double while the SLO holds, halve while it fails, until a
   passing ``lo`` and a failing ``hi`` exist (a failure at ``start / 2**max_halvings``
   means the cell is unservable: rate 0);
2. bisect geometrically (``mid = sqrt(lo * hi)``) until ``hi / lo <= 1 + rel_tol``.

Returns ``lo``, the highest rate *observed* to pass: a conservative answer. The number of
probes is bounded by ``max_probes``. A probe passes (``slo_met``) when p99 TTFT and p99
TPOT of its judged requests (all but the first ``WARMUP_FRACTION``) meet the targets and
no request failed; the simulator and the profiler judge probes the same way.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from aibrix_spec.components.optimizer import SloTargets
from runtime_components.common.stats import nearest_rank_percentile as percentile  # nearest rank: an observed value

__all__ = [
    "RateSearch", "find_max_rate", "percentile", "ProbeStats", "slo_met", "WARMUP_FRACTION", "probe_requests", "SPAN_E2E",
    "arrival_offsets",
]

#: The first requests of a probe meet an empty engine (optimistic); they are not judged.
WARMUP_FRACTION = 0.15
SPAN_E2E = 6.0  #: a probe's arrivals span this many lone-request latencies (see probe_requests)


@dataclass
class RateSearch:
    """A bracketing-then-bisection search driven from outside, so that sync callers (the
    simulator) and async callers (the profiler) share it::

        search = RateSearch(start=1.0)
        while (rate := search.next_rate()) is not None:
            search.record(rate, meets_slo(rate))
        search.max_rate  # 0.0 when even a trickle fails
    """

    start: float
    rel_tol: float = 0.1
    max_probes: int = 20
    max_halvings: int = 8
    probes: list[tuple[float, bool]] = field(default_factory=list)
    lo: float = 0.0
    hi: float = math.inf

    def __post_init__(self) -> None:
        if self.start <= 0 or self.rel_tol <= 0:
            raise ValueError(f"start and rel_tol must be > 0, got start={self.start}, rel_tol={self.rel_tol}")

    @property
    def max_rate(self) -> float:
        return self.lo

    def next_rate(self) -> float | None:
        """The next rate to probe, or None when the search is done."""
        if len(self.probes) >= self.max_probes:
            return None
        if not self.probes:
            return self.start
        if self.lo == 0.0:  # still halving down from a failing start
            halvings = len(self.probes)
            return None if halvings > self.max_halvings else self.start / 2**halvings
        if self.hi == math.inf:  # still doubling up from a passing rate
            return self.lo * 2
        if self.hi / self.lo <= 1 + self.rel_tol:
            return None
        return math.sqrt(self.lo * self.hi)

    def record(self, rate: float, passed: bool) -> None:
        self.probes.append((rate, passed))
        if passed:
            self.lo = max(self.lo, rate)
        else:
            self.hi = min(self.hi, rate)


def find_max_rate(meets_slo: Callable[[float], bool], *, start: float, rel_tol: float = 0.1,
                  max_probes: int = 20) -> RateSearch:
    """Run a ``RateSearch`` with a synchronous probe."""
    search = RateSearch(start=start, rel_tol=rel_tol, max_probes=max_probes)
    while (rate := search.next_rate()) is not None:
        search.record(rate, meets_slo(rate))
    return search


@dataclass(frozen=True)
class ProbeStats:
    rate: float  # requests/s in the model's time
    ttft_s: list[float] = field(default_factory=list)  # per measured request, model time
    tpot_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def slo_met(stats: ProbeStats, slo: SloTargets) -> bool:
    """p99 TTFT and TPOT within targets, and no failed request."""
    if stats.errors or not stats.ttft_s:
        return False
    if slo.ttft_p99_ms is not None and percentile(stats.ttft_s, 99) * 1000 > slo.ttft_p99_ms:
        return False
    if slo.tpot_p99_ms is not None and stats.tpot_s and percentile(stats.tpot_s, 99) * 1000 > slo.tpot_p99_ms:
        return False
    return True




def probe_requests(rate: float, lone_e2e_s: float, *, minimum: int, maximum: int) -> int:
    """Requests a probe needs to reach steady state: arrivals must span ``SPAN_E2E`` lone-request
    latencies, or a fast burst would finish inside one batch and look servable."""
    return max(minimum, min(maximum, math.ceil(rate * SPAN_E2E * lone_e2e_s)))


def arrival_offsets(rate: float, requests: int, seed: int) -> list[float]:
    """Poisson arrival times (seconds from the first) of a probe at ``rate``.

    The same seed gives the same unit-rate pattern scaled by ``1 / rate`` (common random
    numbers): probes at different rates, and the simulator and the profiler at the same
    rate, see the same burst structure, so differences come from the rate and the engine,
    not from sampling. ``rate`` 0 puts every request at time 0.
    """
    rng = random.Random(seed)
    offsets, t = [], 0.0
    for _ in range(requests):
        offsets.append(t)
        t += rng.expovariate(rate) if rate > 0 else 0.0
    return offsets
