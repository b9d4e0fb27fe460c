"""The wait logic, separate from Ray so it is testable with any ``nodes()`` source.

``alive_gpus(nodes)`` sums the ``GPU`` resource of nodes that are alive, in the shape
``ray.nodes()`` returns (``[{"Alive": bool, "Resources": {"GPU": float, ...}}, ...]``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["WaitResult", "alive_gpus", "wait_for_gpus"]


@dataclass(frozen=True)
class WaitResult:
    ready: bool
    gpus: float
    alive_nodes: int
    waited_s: float


def alive_gpus(nodes: Iterable[Mapping[str, Any]]) -> tuple[float, int]:
    """(GPUs on alive nodes, number of alive nodes)."""
    gpus, alive = 0.0, 0
    for node in nodes:
        if node.get("Alive"):
            alive += 1
            gpus += float((node.get("Resources") or {}).get("GPU", 0.0))
    return gpus, alive


def wait_for_gpus(
    expected_gpus: int,
    nodes: Callable[[], Iterable[Mapping[str, Any]]],
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[float, int], None] | None = None,
) -> WaitResult:
    """Poll ``nodes()`` until ``expected_gpus`` GPUs are alive or ``timeout_s`` passes."""
    if expected_gpus < 1:
        raise ValueError("expected_gpus must be at least 1")
    start = clock()
    last: tuple[float, int] | None = None
    while True:
        gpus, alive = alive_gpus(nodes())
        if progress is not None and (gpus, alive) != last:
            progress(gpus, alive)
        last = (gpus, alive)
        waited = clock() - start
        if gpus >= expected_gpus:
            return WaitResult(True, gpus, alive, waited)
        if waited >= timeout_s:
            return WaitResult(False, gpus, alive, waited)
        sleep(min(poll_s, max(0.0, timeout_s - waited)))
