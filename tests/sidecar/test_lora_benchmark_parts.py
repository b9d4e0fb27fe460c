"""The LoRA benchmark's inputs and verdict: replica counts follow popularity and fit the slots,
random placement fills slots by the same rule as ours, and "best" needs both TTFT P99 and loads, each within chance of the rival's or better."""

from __future__ import annotations

import random

import pytest

from benchmarks.lora import PODS, STATIC_SLOTS, adapter_names, is_best, pins_for, random_pins, replica_demands


def test_replicas_follow_popularity_and_fill_exactly_the_pinned_slots():
    demands = replica_demands(adapter_names(), STATIC_SLOTS * PODS, PODS)
    replicas = [d.replicas for d in demands]
    assert sum(replicas) == STATIC_SLOTS * PODS
    assert replicas == sorted(replicas, reverse=True)
    assert replicas[0] == PODS and replicas[-1] >= 1
    assert [d.name for d in demands][:3] == ["lora-000", "lora-001", "lora-002"]


@pytest.mark.parametrize("seed", range(5))
def test_random_pins_drop_no_replica_and_never_exceed_a_pods_slots(seed):
    demands = replica_demands(adapter_names(), STATIC_SLOTS * PODS, PODS)
    pins = random_pins(demands, PODS, STATIC_SLOTS, random.Random(seed))
    assert all(len(v) <= STATIC_SLOTS for v in pins.values())
    holders = {d.name: sum(d.name in v for v in pins.values()) for d in demands}
    assert holders == {d.name: d.replicas for d in demands}, "the same replica counts as placement"


def test_placement_and_random_pin_the_same_replicas_and_dynamic_pins_none():
    names = adapter_names()
    ours, rand = pins_for("placement", names, 1), pins_for("random", names, 1)
    assert sorted(a for v in ours.values() for a in v) == sorted(a for v in rand.values() for a in v)
    assert ours != rand
    assert pins_for("dynamic", names, 1) == {}


def _r(p99: float, ci_high: float, loads: float, loads_high: float | None = None) -> dict:
    return {"ttft_p99_s": p99, "ttft_p99_s_ci": (p99 * 0.9, ci_high),
            "loads_per_min": loads, "loads_per_min_ci": (loads * 0.9, loads if loads_high is None else loads_high)}


BEST_CASES = [
    # (ours, rival, expected, why)
    (_r(1.0, 1.1, 10), _r(1.2, 1.3, 12), True, "better on both"),
    (_r(1.0, 1.1, 13), _r(1.2, 1.3, 12), False, "more loads per minute than the rival's interval loses"),
    (_r(1.0, 1.1, 13), _r(1.2, 1.3, 12, 14), True, "a load rate inside the rival's 95 % interval is a match"),
    (_r(1.25, 1.3, 10), _r(1.2, 1.3, 12), True, "a P99 inside the rival's 95 % interval is a match"),
    (_r(1.35, 1.4, 10), _r(1.2, 1.3, 12), False, "a P99 above the rival's interval loses"),
]


@pytest.mark.parametrize(("ours", "rival", "expected", "why"), BEST_CASES, ids=[c[3] for c in BEST_CASES])
def test_is_best_needs_both_ttft_p99_and_loads(ours, rival, expected, why):
    assert is_best({"ours": ours, "rival": rival}, "ours") is expected, why
