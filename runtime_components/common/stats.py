"""Order-statistic helpers shared by the components and benchmarks.

Where it sits: the engine simulator's run summary (``engine_sim.des``), the load client's
report (``loadgen.report``) and the benchmarks all quote latency percentiles; they use
these so that "p99" means the same number everywhere.

Formulas, for ``n`` values sorted ascending ``v[0] <= ... <= v[n-1]`` and ``q`` in 0..100:

- ``percentile``: linear interpolation between order statistics (numpy's default,
  "type 7"): ``pos = (n - 1) * q / 100``, ``v[floor(pos)] + (v[ceil(pos)] - v[floor(pos)])
  * frac(pos)``; NaN for no values.
- ``nearest_rank_percentile``: the smallest value with at least ``q`` percent of the values
  at or below it: ``v[max(1, ceil(q / 100 * n)) - 1]``; always one of the observed values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["percentile", "nearest_rank_percentile"]


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; NaN when empty.

    Values need not be sorted (already sorted input is sorted again in linear time).
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def nearest_rank_percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): an observed value; ValueError when empty."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty list")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
