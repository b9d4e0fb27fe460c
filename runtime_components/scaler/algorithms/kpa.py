"""Knative Pod Autoscaler decision, as a pure function over explicit state.

With `S` and `P` the total metric averaged over the stable (60 s) and panic (6 s) windows,
`t` the per-pod target and `r = max(1, ready pods)`:

    stable_need = ceil(S / t)          panic_need = ceil(P / t)
    both clamped to [floor(r / max_scale_down_rate), ceil(r * max_scale_up_rate)]
    over_threshold = panic_need / r >= panic_threshold          (200 %)

Panic starts when over the threshold, is extended while over it, and ends once a whole stable
window passes without crossing it. Outside panic the decision is `stable_need`; in panic it is
the highest `max(panic_need, stable_need)` seen since panic began (panic never scales down, and
as in Knative the stable need counts too: after a long surge the 60 s window can exceed the 6 s
one). An optional
scale-down delay keeps the highest decision of its window. With scale to zero, 0 is returned
only after the total has been 0 for the grace period; otherwise the floor is 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = ["KpaDecision", "KpaState", "kpa_decide"]


@dataclass(frozen=True)
class KpaState:
    """What KPA remembers between two decisions."""

    panic_since: float | None = None
    max_panic_pods: int = 0
    zero_since: float | None = None
    recent_decisions: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class KpaDecision:
    """Desired replicas, why, and the state for the next call."""

    replicas: int
    reason: str
    state: KpaState


def kpa_decide(
    *,
    now: float,
    stable_total: float,
    panic_total: float,
    ready_pods: int,
    target: float,
    panic_threshold: float,
    max_scale_up_rate: float,
    max_scale_down_rate: float,
    stable_window_seconds: float,
    scale_down_delay_seconds: float,
    scale_to_zero: bool,
    scale_to_zero_grace_seconds: float,
    state: KpaState,
) -> KpaDecision:
    """One KPA tick; see the module docstring for the formulas."""
    if target <= 0:
        raise ValueError(f"target must be positive, got {target}")
    ready = max(1, ready_pods)
    max_up = math.ceil(ready * max_scale_up_rate)
    max_down = math.floor(ready / max_scale_down_rate)
    stable_need = min(max(math.ceil(stable_total / target), max_down), max_up)
    panic_need = min(max(math.ceil(panic_total / target), max_down), max_up)
    over_threshold = panic_need / ready >= panic_threshold

    panic_since = state.panic_since
    max_panic_pods = state.max_panic_pods
    if over_threshold:
        panic_since = now
    elif panic_since is not None and now - panic_since >= stable_window_seconds:
        panic_since, max_panic_pods = None, 0

    if panic_since is not None:
        max_panic_pods = max(max_panic_pods, panic_need, stable_need)
        desired, reason = max_panic_pods, "panic"
    else:
        desired, reason = stable_need, "stable"

    recent = _within(state.recent_decisions + ((now, desired),), now, scale_down_delay_seconds)
    delayed = max(replicas for _, replicas in recent)
    if delayed > desired:
        desired, reason = delayed, "scale-down-delay"

    zero_since = state.zero_since
    if stable_total <= 0 and panic_total <= 0:
        zero_since = now if zero_since is None else zero_since
    else:
        zero_since = None
    if desired <= 0:
        grace_over = zero_since is not None and now - zero_since >= scale_to_zero_grace_seconds
        if not (scale_to_zero and grace_over):
            desired = 1
            reason = "scale-to-zero-grace" if scale_to_zero else reason

    new_state = replace(
        state,
        panic_since=panic_since,
        max_panic_pods=max_panic_pods,
        zero_since=zero_since,
        recent_decisions=recent,
    )
    return KpaDecision(replicas=desired, reason=reason, state=new_state)


def _within(decisions: Sequence[tuple[float, int]], now: float, window: float) -> tuple[tuple[float, int], ...]:
    """Decisions made in (now - window, now]; the newest is always kept."""
    return tuple(d for d in decisions if d[0] > now - window or d[0] == now)
