"""Demand from the gateway: requests held in its queues plus those in flight, per model.

Why: an engine's metrics cannot show demand that has no engine yet (a model at zero
replicas, or a queue that builds while new pods start). The gateway's flow control holds
such requests and exports them (``aibrix_gateway_flow_held_requests`` and
``aibrix_gateway_flow_inflight_requests``, label ``model``). This module reads them from every
gateway replica and decides, purely, two things:

- ``ZeroGate.bound``: a workload with demand has at least one replica; one without demand for
  ``scaleToZeroGraceSeconds`` goes to zero (an unreadable gateway is not idle);
- ``uncovered_held``: the held requests that the pods already starting will not absorb
  (``held - starting x target``), the only part of the queue that is new demand for the policy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from runtime_components.scaler.scrape import parse_metric

__all__ = ["HELD_METRIC", "INFLIGHT_METRIC", "DemandReading", "ZeroGate", "read_demand", "uncovered_held"]

HELD_METRIC = "aibrix_gateway_flow_held_requests"
INFLIGHT_METRIC = "aibrix_gateway_flow_inflight_requests"


@dataclass(frozen=True)
class DemandReading:
    """Summed over the gateway replicas that answered; ``complete`` when all of them did."""

    held: float
    inflight: float
    complete: bool
    errors: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return self.held + self.inflight


async def read_demand(session: aiohttp.ClientSession, urls: list[str], model: str, timeout_s: float) -> DemandReading:
    """Read every gateway replica's /metrics; a replica that fails is reported, not counted."""

    async def one(url: str) -> tuple[float, float] | str:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                if response.status != 200:
                    return f"{url}: HTTP {response.status}"
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return f"{url}: {type(error).__name__}: {error}"
        labels = {"model": model}
        held = parse_metric(text, (HELD_METRIC,), labels) or 0.0  # absent: nothing held there yet
        inflight = parse_metric(text, (INFLIGHT_METRIC,), labels) or 0.0
        return held, inflight

    results = await asyncio.gather(*(one(u) for u in urls))
    values = [r for r in results if not isinstance(r, str)]
    errors = tuple(r for r in results if isinstance(r, str))
    return DemandReading(sum(v[0] for v in values), sum(v[1] for v in values), complete=not errors, errors=errors)


def uncovered_held(held: float, spec_replicas: int, ready_pods: int, target: float) -> float:
    """Held requests beyond what the pods still starting will take (each carries ``target``)."""
    starting = max(0, spec_replicas - ready_pods)
    return max(0.0, held - starting * target)


class ZeroGate:
    """Keeps a workload with recent demand at >= 1 replica, and takes one idle for the grace to zero.

    Demand seen within the last ``grace_s`` -> at least one replica; complete readings of zero
    for ``grace_s`` -> zero; otherwise (nothing read yet, or a gateway unreadable) the
    policy's own decision stands: an unreadable gateway is neither demand nor idleness."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._busy_at: float | None = None  # last time demand was seen
        self._idle_since: float | None = None  # start of the current run of complete zero readings

    def observe(self, now: float, reading: DemandReading) -> None:
        if reading.total > 0:
            self._busy_at, self._idle_since = now, None
        elif not reading.complete:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now

    def bound(self, now: float, desired: int) -> tuple[int, str | None]:
        """``desired`` adjusted for demand, and the reason when it changed."""
        if self._busy_at is not None and now - self._busy_at < self.grace_s:
            return (1, "demand-holds-one") if desired < 1 else (desired, None)
        if self._idle_since is not None and now - self._idle_since >= self.grace_s:
            return (0, "idle-to-zero") if desired != 0 else (0, None)
        return desired, None
