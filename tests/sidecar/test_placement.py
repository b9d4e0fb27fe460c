"""Adapter placement: every pod agrees, limits hold, churn stays small."""

from __future__ import annotations

import pytest

from runtime_components.sidecar.placement import AdapterDemand, place_adapters, rendezvous_rank

PODS = [f"pod-{i}" for i in range(8)]


@pytest.mark.parametrize(
    ("adapters", "pods", "max_loras", "expected_unplaced"),
    [
        ([AdapterDemand("a", 1)], ["p0"], 1, {}),
        ([AdapterDemand("a", 3)], ["p0", "p1"], 4, {"a": 1}),  # only two distinct pods exist
        ([AdapterDemand("a"), AdapterDemand("b"), AdapterDemand("c")], ["p0"], 2, {"c": 1}),
        ([AdapterDemand("a", 2)], [], 4, {"a": 2}),
        ([AdapterDemand(f"x{i}") for i in range(64)], PODS, 8, {}),  # exactly full
    ],
)
def test_placement_table(adapters, pods, max_loras, expected_unplaced):
    placement = place_adapters(adapters, pods, max_loras)
    assert dict(placement.unplaced) == expected_unplaced
    for pod, held in placement.per_pod.items():
        assert len(held) <= max_loras, pod
    for name, holders in placement.holders.items():
        assert len(holders) == len(set(holders))
        for pod in holders:
            assert name in placement.per_pod[pod]


def test_every_pod_computes_the_same_placement_from_any_input_order():
    adapters = [AdapterDemand(f"lora-{i}", 1 + i % 3) for i in range(40)]
    first = place_adapters(adapters, PODS, 8)
    second = place_adapters(list(reversed(adapters)), list(reversed(PODS)), 8)
    assert first == second


def test_popular_adapters_get_their_replicas_before_others_fill_the_pods():
    adapters = [AdapterDemand(f"rare-{i}") for i in range(15)] + [AdapterDemand("hot", 4)]
    placement = place_adapters(adapters, PODS[:4], 4)
    assert len(placement.holders["hot"]) == 4
    assert sum(placement.unplaced.values()) == 3  # 16 slots, 19 wanted


def test_a_leaving_pod_moves_only_its_own_adapters():
    adapters = [AdapterDemand(f"lora-{i}") for i in range(100)]
    before = place_adapters(adapters, PODS, 100)
    after = place_adapters(adapters, PODS[:-1], 100)
    moved = [a for a in before.holders if before.holders[a] != after.holders[a]]
    assert set(moved) == set(before.per_pod[PODS[-1]])


def test_rank_is_a_permutation_and_stable():
    assert sorted(rendezvous_rank("a", PODS)) == sorted(PODS)
    assert rendezvous_rank("a", PODS) == rendezvous_rank("a", list(reversed(PODS)))
    assert rendezvous_rank("a", PODS) != rendezvous_rank("b", PODS)


@pytest.mark.parametrize(
    ("adapters", "message"),
    [
        ([AdapterDemand("a"), AdapterDemand("a")], "declared twice"),
        ([AdapterDemand("a", 0)], "replicas must be >= 1"),
    ],
)
def test_bad_demands_are_rejected(adapters, message):
    with pytest.raises(ValueError, match=message):
        place_adapters(adapters, PODS, 4)
