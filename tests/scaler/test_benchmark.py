"""The benchmark's control-loop glue over engine_sim's DES, and the oscillation measure."""

from __future__ import annotations

import random

import pytest

from benchmarks.autoscaling import Row, Scenario, arrivals, compare, measure, run_policy
from runtime_components.scaler.analysis import count_oscillations

OSCILLATION_CASES = [
    # (events, window, expected, why)
    ([], 300, 0, "no events"),
    ([(0, 1, 2), (60, 2, 4), (120, 4, 6)], 300, 0, "monotone scale-up"),
    ([(0, 1, 3), (100, 3, 1)], 300, 1, "up then down within the window"),
    ([(0, 1, 3), (400, 3, 1)], 300, 0, "reversal after the window is not an oscillation"),
    ([(0, 1, 3), (60, 3, 2), (100, 2, 4), (1000, 4, 1)], 300, 2, "two quick reversals, one slow"),
    ([(0, 2, 2), (10, 2, 3)], 300, 0, "a no-op event is ignored"),
]


@pytest.mark.parametrize(("events", "window", "expected", "why"), OSCILLATION_CASES)
def test_count_oscillations(events, window, expected, why):
    assert count_oscillations(events, window) == expected, why


SMALL = Scenario(duration_s=420.0, low_rps=0.5, high_rps=4.0, max_replicas=4, seed=3)


def _step_trace() -> list:
    rates = [0.5] * 60 + [4.0] * 360
    return arrivals(rates, random.Random(5))


def test_fixed_fleet_costs_replicas_times_duration():
    run = run_policy(SMALL, _step_trace(), "fixed", 2, random.Random(1))
    assert run.events == []
    assert run.gpu_seconds == pytest.approx(2 * SMALL.duration_s)
    assert {ready for _, ready, _ in run.timeline} == {2}


def test_added_engines_serve_only_after_their_startup_delay():
    run = run_policy(SMALL, _step_trace(), "kpa", 0, random.Random(1))
    first_up = run.events[0]
    assert first_up[2] > first_up[1] == 1
    grown = [t for t, ready, _ in run.timeline if ready > 1]
    assert grown and grown[0] >= first_up[0] + SMALL.startup_s[0]
    assert all(SMALL.min_replicas <= after <= SMALL.max_replicas for _, _, after in run.events)
    row = measure(SMALL, "step", run)
    assert row.failed == 0 and row.scaling_events == len(run.events)


def _row(trace: str, policy: str, p99: float, gpu: float, osc: int) -> Row:
    return Row(trace, policy, 1.0, p99 / 2, p99, p99 / 4, gpu, osc + 2, osc, 0)


COMPARE_CASES = [
    # (kpa (p99, gpu, osc), apa (p99, gpu, osc), expected best, osc reduction, p99 reduction, gpu ratio, why)
    ((9.0, 1.0, 1), (8.0, 1.0, 2), "apa", 0.0, 0.2, 1.0, "lower P99 wins among the frugal ones"),
    ((9.0, 1.0, 1), (5.0, 1.5, 0), "kpa", 0.5, 0.1, 1.0, "apa uses more GPU-hours than HPA: kpa chosen"),
    ((9.0, 1.2, 1), (8.0, 1.5, 0), "apa", 1.0, 0.2, 1.5, "neither is frugal: lower P99"),
]


@pytest.mark.parametrize(("kpa", "apa", "best", "osc", "p99", "gpu", "why"), COMPARE_CASES)
def test_compare_picks_the_better_of_kpa_and_apa(kpa, apa, best, osc, p99, gpu, why):
    rows = [_row("t", "hpa", 10.0, 1.0, 2), _row("t", "fixed", 7.0, 1.0, 0),
            _row("t", "kpa", *kpa), _row("t", "apa", *apa),
            _row("t", "kpa-default", 9.0, 0.5, 9), _row("t", "apa-default", 9.0, 0.5, 9)]
    result = compare(rows)
    assert result["best_policy"] == best, why
    assert result["oscillation_reduction_vs_hpa"] == pytest.approx(osc), why
    assert result["p99_latency_reduction_vs_hpa"] == pytest.approx(p99), why
    assert result["gpu_hours_ratio_vs_hpa"] == pytest.approx(gpu), why


def test_a_lagging_metric_delays_the_first_scale_up():
    trace = _step_trace()
    fresh = run_policy(SMALL, trace, "hpa", 0, random.Random(1))
    lagged = run_policy(SMALL, trace, "hpa-lag30", 0, random.Random(1))
    assert fresh.events and lagged.events
    assert lagged.events[0][0] > fresh.events[0][0]
