"""The LoRA benchmark's placement inputs: replica counts follow popularity and fit the slots."""

from __future__ import annotations

import random

from benchmarks.lora import PODS, STATIC_SLOTS, adapter_names, random_pins, replica_demands


def test_replicas_follow_popularity_and_fill_exactly_the_pinned_slots():
    demands = replica_demands(adapter_names(), STATIC_SLOTS * PODS, PODS)
    replicas = [d.replicas for d in demands]
    assert sum(replicas) == STATIC_SLOTS * PODS
    assert replicas == sorted(replicas, reverse=True)
    assert replicas[0] == PODS and replicas[-1] >= 1
    assert [d.name for d in demands][:3] == ["lora-000", "lora-001", "lora-002"]


def test_random_pins_never_exceed_a_pods_slots():
    demands = replica_demands(adapter_names(), STATIC_SLOTS * PODS, PODS)
    pins = random_pins(demands, PODS, STATIC_SLOTS, random.Random(1))
    assert all(len(v) <= STATIC_SLOTS for v in pins.values())
