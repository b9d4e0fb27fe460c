"""Adapter placement: which of a model's ready pods hold each LoRA adapter.

Every sidecar computes the whole assignment from the same inputs (the declared adapters
and the ready-pod set it watches) and keeps only its own row, so all pods agree without
a coordinator. The assignment is capacity-bounded rendezvous (highest-random-weight)
hashing:

1. Adapters are placed in a fixed order: more replicas first, then by name.
2. Each adapter ranks all pods by ``score(adapter, pod) = blake2b(adapter | pod)`` and
   takes the first ``replicas`` pods that still have a free slot (``max_loras``).

Rendezvous hashing keeps churn low: when a pod joins or leaves, only adapters that ranked
it among their holders move (about ``replicas / pods`` of them), instead of reshuffling
everything as ``hash mod n`` would. The capacity bound means an adapter whose preferred
pods are full spills to its next-ranked pod, and an adapter that cannot be placed at all
(every slot taken) is reported, never silently dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["AdapterDemand", "Placement", "place_adapters", "rendezvous_rank"]


@dataclass(frozen=True)
class AdapterDemand:
    """One adapter and how many pods should hold it."""

    name: str
    replicas: int = 1


@dataclass(frozen=True)
class Placement:
    """The result: holders per adapter, adapters per pod, and what did not fit."""

    holders: Mapping[str, tuple[str, ...]]
    per_pod: Mapping[str, tuple[str, ...]]
    unplaced: Mapping[str, int] = field(default_factory=dict)  #: adapter -> replicas missing


def _score(adapter: str, pod: str) -> int:
    digest = hashlib.blake2b(f"{adapter}\x00{pod}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_rank(adapter: str, pods: Iterable[str]) -> list[str]:
    """Pods in the adapter's preference order (highest score first, name breaks ties)."""
    return sorted(pods, key=lambda pod: (-_score(adapter, pod), pod))


def place_adapters(adapters: Sequence[AdapterDemand], pods: Iterable[str], max_loras: int) -> Placement:
    """Assign each adapter to up to ``replicas`` distinct pods with at most ``max_loras`` each.

    >>> p = place_adapters([AdapterDemand("a", 2), AdapterDemand("b")], ["p0", "p1", "p2"], 1)
    >>> sorted(len(v) for v in p.per_pod.values()), dict(p.unplaced)
    ([1, 1, 1], {})
    """
    if max_loras < 0:
        raise ValueError("max_loras must be >= 0")
    pod_list = sorted(set(pods))
    load = {pod: 0 for pod in pod_list}
    holders: dict[str, tuple[str, ...]] = {}
    unplaced: dict[str, int] = {}
    per_pod: dict[str, list[str]] = {pod: [] for pod in pod_list}
    seen: set[str] = set()
    for demand in sorted(adapters, key=lambda a: (-a.replicas, a.name)):
        if demand.name in seen:
            raise ValueError(f"adapter {demand.name!r} is declared twice")
        seen.add(demand.name)
        if demand.replicas < 1:
            raise ValueError(f"adapter {demand.name!r}: replicas must be >= 1")
        chosen: list[str] = []
        for pod in rendezvous_rank(demand.name, pod_list):
            if len(chosen) == demand.replicas:
                break
            if load[pod] < max_loras:
                chosen.append(pod)
                load[pod] += 1
                per_pod[pod].append(demand.name)
        holders[demand.name] = tuple(chosen)
        if len(chosen) < demand.replicas:
            unplaced[demand.name] = demand.replicas - len(chosen)
    return Placement(
        holders=holders,
        per_pod={pod: tuple(sorted(names)) for pod, names in per_pod.items()},
        unplaced=unplaced,
    )
