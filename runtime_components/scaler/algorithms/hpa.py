"""Kubernetes HorizontalPodAutoscaler (autoscaling/v2) replica calculation, as pure functions.

Raw recommendation (`replica_calculator.go` semantics, Pods/AverageValue metrics). With `T` the
total metric over the `n` pods that reported, `t` the per-pod target and `c` the current
(spec) replicas:

    usage_ratio = (T / n) / t
    |usage_ratio - 1| <= tolerance                -> c (no change)
    otherwise pods that did not report are filled in: 0 when scaling up, t when scaling down:
    new_ratio = (T + fill * (c - n)) / (c * t)
    new_ratio reverses direction or is in tolerance -> c
    otherwise                                     -> ceil(new_ratio * c)

Stabilization: the result is clamped between the lowest recommendation of the scale-up window
and the highest of the scale-down window (default 0 s and 300 s).

Scaling policies: within `policy_period_seconds`, replicas may grow to at most
max(start * (1 + percent/100), start + pods) and shrink to at least floor(start * (1 - percent/100)),
where `start` is the replica count at the beginning of the period (current minus the changes
made inside it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Recommendation", "ScaleEvent", "hpa_raw_replicas", "hpa_rate_limit", "hpa_stabilize"]


@dataclass(frozen=True)
class Recommendation:
    """A raw recommendation made at `time`."""

    time: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A change of the replica count by `delta` (positive up, negative down) at `time`."""

    time: float
    delta: int


def hpa_raw_replicas(
    *, total: float, reporting_pods: int, current_replicas: int, target: float, tolerance: float
) -> int:
    """Replicas the metric asks for before stabilization and rate limits.

    >>> hpa_raw_replicas(total=30, reporting_pods=2, current_replicas=2, target=10, tolerance=0.1)
    3
    """
    if target <= 0:
        raise ValueError(f"target must be positive, got {target}")
    if reporting_pods <= 0:
        raise ValueError("no pod reported the metric; the caller must hold its decision instead")
    if current_replicas <= 0:
        return math.ceil(total / target)
    usage_ratio = (total / reporting_pods) / target
    if abs(usage_ratio - 1.0) <= tolerance:
        return current_replicas
    missing = max(0, current_replicas - reporting_pods)
    if missing == 0:
        return math.ceil(usage_ratio * reporting_pods)
    scaling_up = usage_ratio > 1.0
    fill_per_missing_pod = 0.0 if scaling_up else target
    new_ratio = (total + fill_per_missing_pod * missing) / (current_replicas * target)
    if abs(new_ratio - 1.0) <= tolerance or (new_ratio > 1.0) != scaling_up:
        return current_replicas
    return math.ceil(new_ratio * current_replicas)


def hpa_stabilize(
    *,
    history: Sequence[Recommendation],
    now: float,
    current_replicas: int,
    up_window_seconds: float,
    down_window_seconds: float,
) -> int:
    """Clamp `current_replicas` between the window minimum (up) and maximum (down).

    `history` must include the recommendation just made at `now`.
    """
    up_candidates = [r.replicas for r in history if r.time > now - up_window_seconds or r.time == now]
    down_candidates = [r.replicas for r in history if r.time > now - down_window_seconds or r.time == now]
    if not up_candidates or not down_candidates:
        raise ValueError("history must contain the recommendation made at `now`")
    up_recommendation = min(up_candidates)
    down_recommendation = max(down_candidates)
    recommendation = max(current_replicas, up_recommendation)
    return min(recommendation, down_recommendation)


def hpa_rate_limit(
    *,
    desired: int,
    current_replicas: int,
    events: Sequence[ScaleEvent],
    now: float,
    period_seconds: float,
    scale_up_percent: float,
    scale_up_pods: int,
    scale_down_percent: float,
) -> int:
    """Apply the scale-up and scale-down policies (selectPolicy Max) to `desired`."""
    in_period = [e.delta for e in events if e.time > now - period_seconds]
    if desired > current_replicas:
        added = sum(d for d in in_period if d > 0)
        start = current_replicas - added
        limit = max(math.ceil(start * (1 + scale_up_percent / 100.0)), start + scale_up_pods)
        return max(current_replicas, min(desired, limit))
    if desired < current_replicas:
        removed = -sum(d for d in in_period if d < 0)
        start = current_replicas + removed
        limit = math.floor(start * (1 - scale_down_percent / 100.0))
        return min(current_replicas, max(desired, limit))
    return desired
