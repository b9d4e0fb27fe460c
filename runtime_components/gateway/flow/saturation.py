"""When an engine is full: the saturation detector flow control consults before dispatching.

An engine is full when its metrics are stale or missing (a silent engine is not an idle one),
when its last scrape shows ``max_waiting_per_engine`` requests waiting or KV-cache usage at
``max_kv_cache_usage``, or when this gateway's in-flight count there reached
``max_inflight_per_engine``. Otherwise it has room for

    slots = running (last scrape) + max_waiting_per_engine - in flight (this gateway, fresh)

Scrapes lag by up to one interval, while the in-flight count is exact: the engine's own queue
is roughly what we sent minus what it runs, so this keeps that queue under the threshold
between scrapes instead of releasing every held request on one good scrape. The limit grows
as the engine shows it runs more (additive, one threshold per scrape), and stops where the
engine starts queueing (KV full or its batch limit).

Headroom for light users: a user over its fair share (``under_share``) sees the waiting budget
minus ``underShareReserve``; a user under it sees the whole budget. So the engine's own FIFO
queue in front of a light user's request stays short (a heavy tenant cannot fill it), and the
reserve is strictly below the budget, so a heavy user always keeps at least one place. The KV
threshold holds back heavy users only (a light user is bounded by the waiting budget).
A user alone on the model, and every user with ``underShareReserve: 0``, sees the whole
budget and the KV threshold (``share`` returns None).
"""

from __future__ import annotations

from collections.abc import Sequence

from aibrix_spec.components.gateway import SaturationSpec

from ..policy.types import EndpointState

__all__ = ["SaturationDetector", "under_share"]


def under_share(mine: int, total: int, active: int) -> bool:
    """Whether a user with ``mine`` of the model's ``total`` requests in flight, among ``active``
    users (in flight or held, this one included), is below its fair share ``total / active``."""
    return mine * max(1, active) < total


class SaturationDetector:
    """Slots per endpoint from one snapshot; pure (no clock, no state)."""

    def __init__(self, config: SaturationSpec) -> None:
        self.config = config

    def share(self, mine: int, total: int, active: int) -> bool | None:
        """The ``under_share`` argument of ``slots`` for a user: True (light) or False (heavy), or
        None (no regard to shares) when it is the only active user (nobody to keep room for) or
        the reserve is 0 (the headroom is off)."""
        if self.config.reserve == 0 or active <= 1:
            return None
        return under_share(mine, total, active)

    def slots(self, endpoint: EndpointState, *, under_share: bool | None = None) -> int:
        """How many more requests ``endpoint`` may take now (0: full) for a user below its fair
        share (``under_share`` True), over it (False: the budget less the reserve), or without
        regard to shares (None: the whole budget and the KV threshold)."""
        c = self.config
        if endpoint.waiting is None or endpoint.running is None:
            return 0  # stale or never scraped
        budget = c.max_waiting_per_engine - (c.reserve if under_share is False else 0)
        if endpoint.waiting >= budget:
            return 0
        # KV usage stops heavy users only: a light user's request then waits inside the engine,
        # at most the budget behind it, and takes the next freed blocks sooner than the gateway
        # would see them free at its next scrape.
        if under_share is not True and endpoint.kv_cache_usage is not None and endpoint.kv_cache_usage >= c.max_kv_cache_usage:
            return 0
        free = int(endpoint.running) + budget - endpoint.inflight
        if c.max_inflight_per_engine is not None:
            free = min(free, c.max_inflight_per_engine - endpoint.inflight)
        return max(0, free)

    def with_room(self, endpoints: Sequence[EndpointState], *,
                  under_share: bool | None = None) -> tuple[list[EndpointState], int]:
        """The endpoints that have room, and their free slots in total."""
        out: list[EndpointState] = []
        total = 0
        for endpoint in endpoints:
            free = self.slots(endpoint, under_share=under_share)
            if free > 0:
                out.append(endpoint)
                total += free
        return out, total
