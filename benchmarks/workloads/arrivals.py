"""Arrival processes: when requests come. Each returns sorted arrival times in seconds.

- ``poisson(rate)``: exponential gaps with mean ``1/rate`` (independent users).
- ``gamma_bursty(rate, cv)``: Gamma-distributed gaps with the same mean and coefficient of
  variation ``cv`` (shape ``k = 1/cv^2``, scale ``1/(rate k)``): ``cv > 1`` gives bursts
  separated by lulls, as production LLM traces show; ``cv = 1`` is Poisson.
- ``diurnal(low_rate, high_rate, period_s)``: a non-homogeneous Poisson process whose rate
  follows ``low + (high - low) * (1 - cos(2 pi t / period)) / 2`` (a daily ramp squeezed
  into ``period_s``), drawn by thinning (Lewis-Shedler): candidates at ``high_rate``, each
  kept with probability ``rate(t) / high_rate``.

All take a seeded ``random.Random`` and stop at ``n`` arrivals or ``duration_s``, whichever
comes first (at least one bound is required, so no loop is unbounded).
"""

from __future__ import annotations

import math
import random

__all__ = ["poisson", "gamma_bursty", "diurnal"]


def _check(rate: float, n: int | None, duration_s: float | None) -> tuple[int, float]:
    if rate <= 0:
        raise ValueError(f"arrival rate must be > 0 requests/s, got {rate}")
    if n is None and duration_s is None:
        raise ValueError("give n (number of arrivals) or duration_s (seconds), or both")
    return (n if n is not None else 10**9), (duration_s if duration_s is not None else math.inf)


def poisson(rate: float, rng: random.Random, *, n: int | None = None, duration_s: float | None = None) -> list[float]:
    limit, end = _check(rate, n, duration_s)
    out: list[float] = []
    t = 0.0
    while len(out) < limit:
        t += rng.expovariate(rate)
        if t > end:
            break
        out.append(t)
    return out


def gamma_bursty(
    rate: float, cv: float, rng: random.Random, *, n: int | None = None, duration_s: float | None = None
) -> list[float]:
    limit, end = _check(rate, n, duration_s)
    if cv <= 0:
        raise ValueError(f"cv (coefficient of variation of gaps) must be > 0, got {cv}")
    shape = 1.0 / (cv * cv)
    scale = 1.0 / (rate * shape)
    out: list[float] = []
    t = 0.0
    while len(out) < limit:
        t += rng.gammavariate(shape, scale)
        if t > end:
            break
        out.append(t)
    return out


def diurnal(
    low_rate: float,
    high_rate: float,
    period_s: float,
    rng: random.Random,
    *,
    n: int | None = None,
    duration_s: float | None = None,
) -> list[float]:
    limit, end = _check(high_rate, n, duration_s)
    if not 0 <= low_rate <= high_rate:
        raise ValueError(f"need 0 <= low_rate <= high_rate, got low_rate={low_rate}, high_rate={high_rate}")
    if period_s <= 0:
        raise ValueError(f"period_s must be > 0, got {period_s}")
    out: list[float] = []
    t = 0.0
    candidates = 0
    while len(out) < limit and candidates < 100 * limit + 10**6:
        t += rng.expovariate(high_rate)
        candidates += 1
        if t > end:
            break
        rate_t = low_rate + (high_rate - low_rate) * (1 - math.cos(2 * math.pi * t / period_s)) / 2
        if rng.random() * high_rate < rate_t:
            out.append(t)
    return out
