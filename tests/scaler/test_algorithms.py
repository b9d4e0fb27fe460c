"""Table tests of the pure HPA, KPA and APA functions and of the one-second sliding window."""

from __future__ import annotations

import pytest

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

# --- HPA raw formula -------------------------------------------------------------------------

HPA_RAW_CASES = [
    # (total, reporting, current, target, tolerance, expected, why)
    (30.0, 3, 3, 10.0, 0.1, 3, "exactly on target"),
    (32.0, 3, 3, 10.0, 0.1, 3, "6.7% over: inside tolerance"),
    (34.0, 3, 3, 10.0, 0.1, 4, "13% over: ceil(1.133 * 3)"),
    (60.0, 3, 3, 10.0, 0.1, 6, "double load doubles pods"),
    (10.0, 4, 4, 10.0, 0.1, 1, "quarter load"),
    (0.0, 2, 2, 10.0, 0.1, 0, "no load: raw 0 (min clamps later)"),
    (30.0, 2, 4, 10.0, 0.1, 4, "up with 2 missing: missing count 0 -> 30/40 reverses direction -> hold"),
    (60.0, 2, 4, 10.0, 0.1, 6, "up with 2 missing: 60/40 = 1.5 -> 6"),
    (4.0, 2, 4, 10.0, 0.1, 3, "down with 2 missing: missing count as target -> (4+20)/40 -> 3"),
    (17.0, 2, 3, 10.0, 0.1, 3, "down with 1 missing: (17+10)/30 = 0.9 -> in tolerance -> hold"),
    (25.0, 1, 0, 10.0, 0.1, 3, "from zero replicas: ceil(total / target)"),
]


@pytest.mark.parametrize(("total", "reporting", "current", "target", "tol", "expected", "why"), HPA_RAW_CASES)
def test_hpa_raw_replicas(total, reporting, current, target, tol, expected, why):
    got = hpa_raw_replicas(
        total=total, reporting_pods=reporting, current_replicas=current, target=target, tolerance=tol
    )
    assert got == expected, why


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(total=1.0, reporting_pods=0, current_replicas=1, target=1.0, tolerance=0.1), "no pod reported"),
        (dict(total=1.0, reporting_pods=1, current_replicas=1, target=0.0, tolerance=0.1), "target must be positive"),
    ],
)
def test_hpa_raw_replicas_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hpa_raw_replicas(**kwargs)


HPA_STABILIZE_CASES = [
    # (history [(t, replicas)], now, current, up_window, down_window, expected, why)
    ([(0, 5), (100, 3), (200, 2)], 200, 5, 0, 300, 5, "scale-down held by the window maximum"),
    ([(0, 5), (150, 3), (400, 2)], 400, 5, 0, 300, 3, "oldest recommendation left the window"),
    ([(390, 2), (400, 8)], 400, 4, 0, 300, 8, "scale-up is immediate with a 0 s up window"),
    ([(380, 4), (390, 6), (400, 8)], 400, 4, 30, 300, 4, "up window keeps the lowest recommendation"),
    ([(390, 6), (400, 8)], 400, 4, 30, 300, 6, "up window: lowest of 6 and 8"),
]


@pytest.mark.parametrize(("history", "now", "current", "up", "down", "expected", "why"), HPA_STABILIZE_CASES)
def test_hpa_stabilize(history, now, current, up, down, expected, why):
    recs = [Recommendation(float(t), r) for t, r in history]
    got = hpa_stabilize(
        history=recs, now=float(now), current_replicas=current, up_window_seconds=up, down_window_seconds=down
    )
    assert got == expected, why


HPA_RATE_CASES = [
    # (desired, current, events [(t, delta)], now, expected, why)
    (20, 2, [], 100, 6, "up: max(2*2, 2+4) = 6"),
    (20, 10, [], 100, 20, "up: max(10*2, 10+4) = 20"),
    (20, 6, [(95, 4)], 100, 6, "4 added 5 s ago from 2: period limit 6 already reached"),
    (20, 6, [(80, 4)], 100, 12, "the earlier change left the 15 s period"),
    (1, 10, [], 100, 1, "down 100% per period: no limit"),
    (5, 5, [], 100, 5, "no change"),
]


@pytest.mark.parametrize(("desired", "current", "events", "now", "expected", "why"), HPA_RATE_CASES)
def test_hpa_rate_limit(desired, current, events, now, expected, why):
    got = hpa_rate_limit(
        desired=desired, current_replicas=current, events=[ScaleEvent(float(t), d) for t, d in events],
        now=float(now), period_seconds=15, scale_up_percent=100, scale_up_pods=4, scale_down_percent=100,
    )
    assert got == expected, why


def test_hpa_rate_limit_scale_down_percent():
    got = hpa_rate_limit(
        desired=1, current_replicas=10, events=[], now=0.0, period_seconds=15,
        scale_up_percent=100, scale_up_pods=4, scale_down_percent=50,
    )
    assert got == 5


# --- KPA -------------------------------------------------------------------------------------

KPA_DEFAULTS = dict(
    target=10.0, panic_threshold=2.0, max_scale_up_rate=1000.0, max_scale_down_rate=2.0,
    stable_window_seconds=60.0, scale_down_delay_seconds=0.0, scale_to_zero=False,
    scale_to_zero_grace_seconds=30.0,
)

KPA_CASES = [
    # (stable_total, panic_total, ready, state, expected replicas, expected reason, why)
    (30.0, 30.0, 3, KpaState(), 3, "stable", "on target"),
    (45.0, 50.0, 3, KpaState(), 5, "stable", "stable need ceil(4.5); panic 5/3 < 2"),
    (30.0, 70.0, 3, KpaState(), 7, "panic", "panic need 7 / 3 ready >= 2"),
    (10.0, 10.0, 8, KpaState(), 4, "stable", "scale-down limited to ready / 2"),
    (10.0, 10.0, 4, KpaState(panic_since=90.0, max_panic_pods=9), 9, "panic", "panic never scales down"),
    (10.0, 10.0, 4, KpaState(panic_since=30.0, max_panic_pods=9), 2, "stable", "60 s without crossing: leave panic"),
    # Added with the change that panic provisions for the stable need as well (Knative does).
    (80.0, 30.0, 4, KpaState(panic_since=90.0, max_panic_pods=5), 8, "panic", "in panic the stable need 8 beats peak 5"),
    (0.0, 0.0, 2, KpaState(), 1, "stable", "no load without scale-to-zero: floor 1"),
    (10.0, 10.0, 4, KpaState(recent_decisions=()), 2, "stable", "no delay window: down to ceil(10/10)=1 -> limit 2"),
]


@pytest.mark.parametrize(("stable", "panic", "ready", "state", "expected", "reason", "why"), KPA_CASES)
def test_kpa_decide(stable, panic, ready, state, expected, reason, why):
    got = kpa_decide(now=100.0, stable_total=stable, panic_total=panic, ready_pods=ready, state=state, **KPA_DEFAULTS)
    assert (got.replicas, got.reason) == (expected, reason), why


def test_kpa_panic_peak_is_remembered_then_released():
    state = KpaState()
    replicas = []
    # A 6 s burst drives panic to 8 pods; afterwards the load stays low.
    for now, panic_total in [(0.0, 80.0), (2.0, 20.0), (40.0, 20.0), (61.0, 20.0)]:
        d = kpa_decide(now=now, stable_total=20.0, panic_total=panic_total, ready_pods=4, state=state, **KPA_DEFAULTS)
        state = d.state
        replicas.append((d.replicas, d.reason))
    assert replicas == [(8, "panic"), (8, "panic"), (8, "panic"), (2, "stable")]


def test_kpa_scale_down_delay_keeps_the_window_maximum():
    params = dict(KPA_DEFAULTS, scale_down_delay_seconds=30.0)
    first = kpa_decide(now=0.0, stable_total=60.0, panic_total=60.0, ready_pods=6, state=KpaState(), **params)
    second = kpa_decide(now=10.0, stable_total=30.0, panic_total=30.0, ready_pods=6, state=first.state, **params)
    third = kpa_decide(now=40.0, stable_total=30.0, panic_total=30.0, ready_pods=6, state=second.state, **params)
    assert (first.replicas, second.replicas, second.reason, third.replicas) == (6, 6, "scale-down-delay", 3)


def test_kpa_scale_to_zero_waits_for_the_grace_period():
    params = dict(KPA_DEFAULTS, scale_to_zero=True)
    first = kpa_decide(now=0.0, stable_total=0.0, panic_total=0.0, ready_pods=1, state=KpaState(), **params)
    second = kpa_decide(now=31.0, stable_total=0.0, panic_total=0.0, ready_pods=1, state=first.state, **params)
    assert (first.replicas, first.reason) == (1, "scale-to-zero-grace")
    assert second.replicas == 0


# --- APA -------------------------------------------------------------------------------------

APA_DEFAULTS = dict(
    target=10.0, up_tolerance=0.1, down_tolerance=0.2, max_scale_up_rate=2.0, max_scale_down_rate=2.0,
    scale_up_cooldown_seconds=0.0, scale_down_cooldown_seconds=60.0,
)

APA_CASES = [
    # (total, current, ready, last_up, last_change, expected, reason, why)
    (40.0, 4, 4, None, None, 4, "within-band", "on target"),
    (43.0, 4, 4, None, None, 4, "within-band", "7.5% over: inside the up band"),
    (45.0, 4, 4, None, None, 5, "above-band", "12.5% over: jump to ceil(4.5)"),
    (200.0, 4, 4, None, None, 8, "above-band", "need 20, capped at 4 x 2"),
    (33.0, 4, 4, None, None, 4, "within-band", "17.5% under: inside the wider down band"),
    (10.0, 4, 4, None, None, 2, "below-band", "need 1, floored at 4 / 2"),
    (30.0, 4, 4, None, None, 3, "below-band", "25% under: ceil(3.0)"),
    (10.0, 4, 4, None, 50.0, 4, "scale-down-cooldown", "changed 50 s ago"),
    (45.0, 6, 4, None, None, 6, "above-band", "pods still starting: never below current"),
    # Changed: the rate limits multiply ready pods (AIBrix), so pods still starting do not raise them.
    (90.0, 4, 2, None, None, 4, "above-band", "need 9 but 2 ready x 2 = 4: the 2 starting pods add no headroom"),
    (10.0, 6, 2, None, None, 1, "below-band", "2 starting pods go first: floor(2 ready / 2) = 1"),
    (15.0, 0, 0, None, None, 2, "above-band", "from zero replicas: one (assumed) pod x rate 2, need 2"),
]


@pytest.mark.parametrize(("total", "current", "ready", "last_up", "last_change", "expected", "reason", "why"), APA_CASES)
def test_apa_decide(total, current, ready, last_up, last_change, expected, reason, why):
    got = apa_decide(
        now=100.0, total=total, current_replicas=current, ready_pods=ready,
        last_scale_up=last_up, last_scale_change=last_change, **APA_DEFAULTS,
    )
    assert (got.replicas, got.reason) == (expected, reason), why


def test_apa_scale_up_cooldown():
    params = dict(APA_DEFAULTS, scale_up_cooldown_seconds=30.0)
    got = apa_decide(now=100.0, total=80.0, current_replicas=4, ready_pods=4, last_scale_up=90.0,
                     last_scale_change=90.0, **params)
    assert (got.replicas, got.reason) == (4, "scale-up-cooldown")


def test_apa_does_not_compound_while_pods_start():
    """A queue growing during a long start-up must not order pods 2 s after 2 s up to the maximum."""
    current, replicas = 1, []
    for step, total in enumerate([30.0, 45.0, 60.0, 90.0, 120.0]):
        got = apa_decide(now=2.0 * step, total=total, current_replicas=current, ready_pods=1,
                         last_scale_up=None, last_scale_change=None, **APA_DEFAULTS)
        current = got.replicas
        replicas.append(current)
    assert replicas == [2, 2, 2, 2, 2]


# --- sliding window --------------------------------------------------------------------------

WINDOW_CASES = [
    # (samples [(t, v)], now, window, expected, why)
    ([(0.2, 1.0), (1.5, 3.0)], 1.9, 10, 2.0, "two buckets averaged"),
    ([(0.2, 1.0), (0.7, 3.0), (1.5, 5.0)], 1.9, 10, 3.5, "same-second samples averaged first: (2 + 5) / 2"),
    ([(0.0, 100.0), (5.0, 1.0), (6.0, 3.0)], 6.5, 6, 2.0, "window (0.5, 6.5] excludes second 0"),
    ([(0.0, 100.0), (5.0, 1.0)], 20.0, 6, None, "nothing within the window"),
]


@pytest.mark.parametrize(("samples", "now", "window", "expected", "why"), WINDOW_CASES)
def test_window_average(samples, now, window, expected, why):
    w = SlidingWindow(retention_seconds=60)
    for t, v in samples:
        w.record(t, v)
    got = w.average(now, window)
    assert got == (pytest.approx(expected) if expected is not None else None), why


def test_window_drops_buckets_beyond_retention():
    w = SlidingWindow(retention_seconds=10)
    for second in range(100):
        w.record(float(second), 1.0)
    assert len(w) <= 12
    assert w.newest_sample_time() == 99.0


def test_window_rejects_non_positive_retention():
    with pytest.raises(ValueError, match="retention_seconds must be positive, got 0"):
        SlidingWindow(retention_seconds=0)
