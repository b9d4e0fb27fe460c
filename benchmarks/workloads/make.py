"""One call from a workload description to a trace: ``make_trace``.

The seed feeds one ``random.Random``; arrivals are drawn first, then the requests, so the
same arguments always give the same trace (and the same JSONL bytes).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .arrivals import diurnal, gamma_bursty, poisson
from .generators import assign_zipf_adapters, bird_sql, chat_sessions, unique_prompts
from .trace import TraceRequest

__all__ = ["KINDS", "ARRIVALS", "make_trace"]

KINDS = ("chat", "bird-sql", "unique")
ARRIVALS = ("poisson", "gamma", "diurnal")


def make_trace(
    *,
    kind: str,
    n: int,
    rate: float,
    seed: int,
    model: str = "llama-3-8b",
    arrival: str = "poisson",
    burstiness_cv: float = 3.0,
    diurnal_low_fraction: float = 0.2,
    diurnal_period_s: float | None = None,
    adapters: Sequence[str] = (),
    adapter_zipf: float = 1.0,
) -> list[TraceRequest]:
    """``n`` requests of ``kind`` arriving at ``rate`` req/s on average (peak rate for diurnal)."""
    if kind not in KINDS:
        raise ValueError(f"unknown workload kind {kind!r}; expected one of {', '.join(KINDS)}")
    if arrival not in ARRIVALS:
        raise ValueError(f"unknown arrival process {arrival!r}; expected one of {', '.join(ARRIVALS)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(seed)
    if arrival == "poisson":
        times = poisson(rate, rng, n=n)
    elif arrival == "gamma":
        times = gamma_bursty(rate, burstiness_cv, rng, n=n)
    else:
        period = diurnal_period_s if diurnal_period_s is not None else n / rate
        times = diurnal(rate * diurnal_low_fraction, rate, period, rng, n=n)
    times = [round(t, 6) for t in times]  # the JSONL resolution, so a trace round-trips exactly
    if kind == "chat":
        trace = chat_sessions(times, rng, model=model)
    elif kind == "bird-sql":
        trace = bird_sql(times, rng, model=model)
    else:
        trace = unique_prompts(times, rng, model=model)
    if adapters:
        trace = assign_zipf_adapters(trace, adapters, rng, s=adapter_zipf)
    return trace
