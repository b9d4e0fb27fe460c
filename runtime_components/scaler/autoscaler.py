"""One target's autoscaler: metric window + policy state -> a clamped, explained decision.

This is the single implementation both the Kubernetes controller (`controller.py`) and the
trace simulator (`benchmarks/autoscaling.py`) drive, so what is benchmarked is what runs.

Pods that should report but did not (scrape failed, timed out, or frozen) are not idle pods.
Each sample is corrected as Kubernetes' HPA corrects its reading, before it enters the window
(per-pod metrics; `n` pods reported total `T`, `e` pods are ready, `t` is the target):

    T / n <  t  (the reading says scale down):  T' = T + (e - n) * t   missing pods at 100 % of target
    T / n >= t  (the reading says scale up):    T' = max(T, e * t)      missing pods at 0, and never
                                                                        a scale-down from filling them

so missing pods neither drive a scale-down nor exaggerate a scale-up, for every policy.

Per decision at time `now`:
1. no sample ever            -> hold (reason `metrics-missing`)
   newest sample too old     -> hold (reason `metrics-stale`)
   holding keeps the last decision (or the current replicas before the first one);
2. otherwise the policy (HPA, KPA or APA, see `algorithms/`) proposes replicas from the
   window averages of the total metric;
3. the proposal is clamped to [minReplicas, maxReplicas] (reason `clamped-to-min/max` when
   that changed it). Every outcome, held ones included, lies in [min, max].
"""

from __future__ import annotations

from dataclasses import dataclass

from aibrix_spec.components.scaler import ApaParams, HpaParams, KpaParams, ScalingTarget
from runtime_components.scaler.algorithms.apa import apa_decide
from runtime_components.scaler.algorithms.hpa import (
    Recommendation,
    ScaleEvent,
    hpa_rate_limit,
    hpa_raw_replicas,
    hpa_stabilize,
)
from runtime_components.scaler.algorithms.kpa import KpaState, kpa_decide
from runtime_components.scaler.window import SlidingWindow

__all__ = ["Autoscaler", "Decision"]


@dataclass(frozen=True)
class Decision:
    """What the autoscaler wants and why; `held` when metrics did not allow a fresh decision."""

    desired: int
    reason: str
    held: bool = False
    observed_total: float | None = None


class Autoscaler:
    """Stateful wrapper around one policy for one `ScalingTarget` (no clock, no I/O)."""

    def __init__(self, target: ScalingTarget) -> None:
        self.target = target
        self._window = SlidingWindow(retention_seconds=self._longest_window())
        self._reporting_pods = 0
        self._last_desired: int | None = None
        self._hpa_history: list[Recommendation] = []
        self._scale_events: list[ScaleEvent] = []
        self._kpa_state = KpaState()
        self._last_scale_up: float | None = None
        self._last_scale_change: float | None = None

    def record(self, now: float, total: float, reporting_pods: int, *, expected_pods: int | None = None) -> None:
        """One scrape round: the workload's total metric, how many pods reported it and, for
        per-pod metrics, how many should have (the ready pods); see the module docstring."""
        if total < 0:
            raise ValueError(f"metric total must not be negative, got {total}")
        missing = 0 if expected_pods is None else expected_pods - reporting_pods
        if missing > 0 and reporting_pods > 0 and self.target.metric.aggregation == "per-pod":
            t = self.target.target
            if total / reporting_pods < t:
                total += missing * t
            else:
                total = max(total, expected_pods * t)  # type: ignore[operator]
            reporting_pods = expected_pods  # type: ignore[assignment]
        self._window.record(now, total)
        self._reporting_pods = reporting_pods

    def applied(self, now: float, previous: int, new: int) -> None:
        """Tell the policy a scale write from `previous` to `new` replicas succeeded."""
        if new == previous:
            return
        self._scale_events.append(ScaleEvent(now, new - previous))
        self._scale_events = [e for e in self._scale_events if e.time > now - self._event_horizon()]
        self._last_scale_change = now
        if new > previous:
            self._last_scale_up = now

    def decide(self, now: float, current_replicas: int, ready_pods: int) -> Decision:
        """Desired replicas at `now`, given the spec replicas and how many pods are ready."""
        newest = self._window.newest_sample_time()
        if newest is None:
            return self._hold(current_replicas, "metrics-missing")
        if now - newest > self.target.stale_after_seconds:
            return self._hold(current_replicas, "metrics-stale")
        params = self.target.params
        proposal: tuple[int, str, float] | None
        if isinstance(params, HpaParams):
            proposal = self._hpa(now, current_replicas, params)
        elif isinstance(params, KpaParams):
            proposal = self._kpa(now, ready_pods, params)
        else:
            proposal = self._apa(now, current_replicas, ready_pods, params)
        if proposal is None:
            # The newest sample is fresh enough but outside the policy's own window.
            return self._hold(current_replicas, "metrics-stale")
        desired, reason, total = proposal
        clamped = min(max(desired, self.target.min_replicas), self.target.max_replicas)
        if clamped != desired:
            reason = "clamped-to-min" if clamped > desired else "clamped-to-max"
        self._last_desired = clamped
        return Decision(desired=clamped, reason=reason, observed_total=total)

    def _hold(self, current_replicas: int, reason: str) -> Decision:
        base = self._last_desired if self._last_desired is not None else current_replicas
        held = min(max(base, self.target.min_replicas), self.target.max_replicas)
        return Decision(desired=held, reason=reason, held=True)

    def _hpa(self, now: float, current: int, p: HpaParams) -> tuple[int, str, float] | None:
        total = self._window.average(now, p.metric_window_seconds)
        if total is None or self._reporting_pods <= 0:
            return None
        reporting = self._reporting_pods if self.target.metric.aggregation == "per-pod" else max(1, current)
        raw = hpa_raw_replicas(
            total=total, reporting_pods=reporting, current_replicas=current,
            target=self.target.target, tolerance=p.tolerance,
        )
        # Kubernetes clamps the raw recommendation to [min, max] before stabilizing it.
        raw = min(max(raw, self.target.min_replicas), self.target.max_replicas)
        self._hpa_history.append(Recommendation(now, raw))
        horizon = max(p.scale_down_stabilization_seconds, p.scale_up_stabilization_seconds)
        self._hpa_history = [r for r in self._hpa_history if r.time > now - horizon or r.time == now]
        stable = hpa_stabilize(
            history=self._hpa_history, now=now, current_replicas=current,
            up_window_seconds=p.scale_up_stabilization_seconds,
            down_window_seconds=p.scale_down_stabilization_seconds,
        )
        limited = hpa_rate_limit(
            desired=stable, current_replicas=current, events=self._scale_events, now=now,
            period_seconds=p.policy_period_seconds, scale_up_percent=p.scale_up_percent,
            scale_up_pods=p.scale_up_pods, scale_down_percent=p.scale_down_percent,
        )
        if raw == current:
            reason = "within-tolerance"
        elif limited != stable:
            reason = "rate-limited"
        elif stable != raw:
            reason = "stabilized"
        else:
            reason = "scale-up" if raw > current else "scale-down"
        return limited, reason, total

    def _kpa(self, now: float, ready: int, p: KpaParams) -> tuple[int, str, float] | None:
        stable = self._window.average(now, p.stable_window_seconds)
        if stable is None:
            return None
        panic = self._window.average(now, p.panic_window_seconds)
        stable_total = stable
        panic_total = panic if panic is not None else stable_total
        decision = kpa_decide(
            now=now, stable_total=stable_total, panic_total=panic_total, ready_pods=ready,
            target=self.target.target, panic_threshold=p.panic_threshold,
            max_scale_up_rate=p.max_scale_up_rate, max_scale_down_rate=p.max_scale_down_rate,
            stable_window_seconds=p.stable_window_seconds,
            scale_down_delay_seconds=p.scale_down_delay_seconds, scale_to_zero=p.scale_to_zero,
            scale_to_zero_grace_seconds=p.scale_to_zero_grace_seconds, state=self._kpa_state,
        )
        self._kpa_state = decision.state
        return decision.replicas, decision.reason, stable_total

    def _apa(self, now: float, current: int, ready: int, p: ApaParams) -> tuple[int, str, float] | None:
        total = self._window.average(now, p.window_seconds)
        if total is None:
            return None
        decision = apa_decide(
            now=now, total=total, current_replicas=current, ready_pods=ready,
            target=self.target.target, up_tolerance=p.up_fluctuation_tolerance,
            down_tolerance=p.down_fluctuation_tolerance, max_scale_up_rate=p.max_scale_up_rate,
            max_scale_down_rate=p.max_scale_down_rate,
            scale_up_cooldown_seconds=p.scale_up_cooldown_seconds,
            scale_down_cooldown_seconds=p.scale_down_cooldown_seconds,
            last_scale_up=self._last_scale_up, last_scale_change=self._last_scale_change,
        )
        return decision.replicas, decision.reason, total

    def _longest_window(self) -> float:
        p = self.target.params
        if isinstance(p, HpaParams):
            return p.metric_window_seconds
        if isinstance(p, KpaParams):
            return p.stable_window_seconds
        return p.window_seconds

    def _event_horizon(self) -> float:
        p = self.target.params
        return p.policy_period_seconds if isinstance(p, HpaParams) else 1.0
