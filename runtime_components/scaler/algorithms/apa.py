"""AIBrix Pod Autoscaler (APA): a tolerance band around the target, then jump to the need.

With `T` the total metric averaged over the APA window, `t` the per-pod target, `c` the current
(spec) replicas and `r = max(1, ready pods)`:

    ratio = (T / r) / t
    ratio > 1 + up_tolerance     -> min(ceil(T / t), ceil(r * max_scale_up_rate)), at least c
    ratio < 1 - down_tolerance   -> max(ceil(T / t), floor(r / max_scale_down_rate)), at most c
    otherwise                    -> c

The rate limits multiply the READY pods, as AIBrix's APA does (and Knative's KPA): the load
was measured on them. Multiplying the spec replicas instead compounds while pods start (a
decision every 2 s: 1 -> 2 -> 4 -> 8 before any new pod serves), and the queue that builds
during a minutes-long GPU start-up would order pods up to maxReplicas.

Cooldowns: no scale-up within `scale_up_cooldown` of the last scale-up, no scale-down within
`scale_down_cooldown` of the last change in either direction. The band is asymmetric on
purpose: a wider down band keeps a pod that is only briefly idle, which is what damps the
up-down-up oscillations HPA shows on bursty LLM traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ApaDecision", "apa_decide"]


@dataclass(frozen=True)
class ApaDecision:
    """Desired replicas and why."""

    replicas: int
    reason: str


def apa_decide(
    *,
    now: float,
    total: float,
    current_replicas: int,
    ready_pods: int,
    target: float,
    up_tolerance: float,
    down_tolerance: float,
    max_scale_up_rate: float,
    max_scale_down_rate: float,
    scale_up_cooldown_seconds: float,
    scale_down_cooldown_seconds: float,
    last_scale_up: float | None,
    last_scale_change: float | None,
) -> ApaDecision:
    """One APA decision; see the module docstring for the formulas."""
    if target <= 0:
        raise ValueError(f"target must be positive, got {target}")
    need = math.ceil(total / target)
    current = max(0, current_replicas)
    ratio = (total / max(1, ready_pods)) / target
    if ratio > 1 + up_tolerance:
        if last_scale_up is not None and now - last_scale_up < scale_up_cooldown_seconds:
            return ApaDecision(current, "scale-up-cooldown")
        limit = math.ceil(max(1, ready_pods) * max_scale_up_rate)
        return ApaDecision(max(current, min(need, limit)), "above-band")
    if ratio < 1 - down_tolerance:
        if last_scale_change is not None and now - last_scale_change < scale_down_cooldown_seconds:
            return ApaDecision(current, "scale-down-cooldown")
        limit = math.floor(max(1, ready_pods) / max_scale_down_rate)
        return ApaDecision(min(current, max(need, limit)), "below-band")
    return ApaDecision(current, "within-band")
