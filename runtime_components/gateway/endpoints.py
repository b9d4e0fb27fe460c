"""The gateway's table of endpoints: what discovery found, what scraping measured, what the
gateway itself has in flight. Routing reads it as ``EndpointState`` snapshots.

Freshness rules: scraped metrics older than ``staleness_s`` are reported as unknown (None),
never as zero, so a silent engine does not look idle. The in-flight count is the gateway's
own and always fresh. An endpoint whose connection failed (a scrape refused, or Envoy
reporting a connect failure / reset for a routed request) leaves the candidate set until a
later scrape succeeds, so the next requests avoid it even before discovery notices.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from runtime_components.gateway.policy.pool import EndpointPool
from runtime_components.gateway.policy.types import EndpointState

__all__ = ["DiscoveredEndpoint", "EngineSample", "EndpointTable"]

def _make_with_inflight() -> Callable[[EndpointState, int], EndpointState]:
    """Build ``_with_inflight``: straight-line code over the slots' own setters, generated from
    the dataclass's fields (as ``dataclasses`` builds ``__init__``), so a new field is copied
    too. A loop over the field names with getattr/setattr costs three times as much, and this
    runs twice per request."""
    names = [f.name for f in dataclasses.fields(EndpointState)]
    scope: dict[str, object] = {"_new": object.__new__, "_cls": EndpointState}
    lines = ["def _with_inflight(state, inflight):", "    out = _new(_cls)"]
    for name in names:
        scope[f"_set_{name}"] = getattr(EndpointState, name).__set__  # the slot's descriptor
        lines.append(f"    _set_{name}(out, {'inflight' if name == 'inflight' else 'state.' + name})")
    lines.append("    return out")
    exec("\n".join(lines), scope)  # noqa: S102 - code built from the dataclass's own field names
    return cast(Callable[[EndpointState, int], EndpointState], scope["_with_inflight"])


#: ``dataclasses.replace(state, inflight=inflight)`` without re-validating the address.
_with_inflight = _make_with_inflight()


@dataclass(frozen=True)
class DiscoveredEndpoint:
    """One serving pod as discovery reports it."""

    address: str  # "ip:port"
    pod: str
    model: str
    adapters: frozenset[str] = frozenset()  # declared statically; scraping adds the ones loaded
    kv_events_port: int | None = None  # this pod's KV-event publisher, when it differs from the model's


@dataclass(frozen=True)
class EngineSample:
    """Numbers derived from one scrape of an engine (None: the engine does not export it)."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    throughput_tps: float | None = None
    prefix_hit_ratio: float | None = None
    max_loras: int | None = None
    adapters: frozenset[str] = frozenset()
    engine: str = ""  #: the metric dialect the sample was read in (vllm, sglang)


@dataclass
class _Entry:
    info: DiscoveredEndpoint
    sample: EngineSample | None = None
    sampled_at: float = float("-inf")
    inflight: int = 0
    down: bool = False
    down_reason: str = ""
    shows_sample: bool = False  #: the pooled state carries the sample (it was fresh when built)
    extra: dict[str, float] = field(default_factory=dict)


class EndpointTable:
    """Mutable state of every endpoint, owned by the gateway's event loop (no locks).

    Each model's up endpoints are also kept as an ``EndpointPool`` of current snapshots,
    updated on every change (a scrape, an in-flight count, a discovery update, a failure),
    so routing reads it per request without building anything. A sample that goes stale is
    taken out of its snapshot when the pool is next read (a heap of expiry times, so the
    check costs nothing when nothing expired)."""

    def __init__(self, staleness_s: float) -> None:
        self._staleness_s = staleness_s
        self._entries: dict[str, _Entry] = {}
        self._pools: dict[str, EndpointPool] = {}
        self._down: dict[str, int] = {}  # model -> endpoints marked down
        self._expiry: list[tuple[float, float, str]] = []  # (stale after, sampled_at, address)

    # -- snapshots --------------------------------------------------------------------------
    def _state(self, address: str, entry: _Entry, now: float) -> EndpointState:
        sample = entry.sample
        fresh = sample if sample is not None and now - entry.sampled_at <= self._staleness_s else None
        entry.shows_sample = fresh is not None
        adapters = entry.info.adapters | sample.adapters if sample is not None else entry.info.adapters
        return EndpointState(
            address=address,
            pod=entry.info.pod,
            model=entry.info.model,
            adapters=adapters,
            running=fresh.running if fresh else None,
            waiting=fresh.waiting if fresh else None,
            kv_cache_usage=fresh.kv_cache_usage if fresh else None,
            ttft_s=fresh.ttft_s if fresh else None,
            tpot_s=fresh.tpot_s if fresh else None,
            throughput_tps=fresh.throughput_tps if fresh else None,
            prefix_hit_ratio=fresh.prefix_hit_ratio if fresh else None,
            inflight=entry.inflight,
            max_loras=sample.max_loras if sample is not None else None,
        )

    def _refresh(self, address: str, entry: _Entry, now: float) -> None:
        """Rebuild ``address``'s snapshot in its model's pool (or take it out while down)."""
        pool = self._pools.setdefault(entry.info.model, EndpointPool())
        if entry.down:
            pool.remove(address)
        else:
            pool.put(self._state(address, entry, now))

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            _, sampled_at, address = heapq.heappop(expiry)
            entry = self._entries.get(address)
            if entry is not None and entry.sampled_at == sampled_at and entry.shows_sample:
                self._refresh(address, entry, now)

    # -- discovery --------------------------------------------------------------------------
    def replace(self, endpoints: list[DiscoveredEndpoint]) -> tuple[list[str], list[str]]:
        """Make the table hold exactly ``endpoints``; return (added, removed) addresses."""
        now = time.monotonic()
        wanted = {e.address: e for e in endpoints}
        removed = [a for a in self._entries if a not in wanted]
        added = [a for a in wanted if a not in self._entries]
        for address in removed:
            self._drop(address)
        for address, info in wanted.items():
            entry = self._entries.get(address)
            if entry is None:
                entry = self._entries[address] = _Entry(info)
                self._refresh(address, entry, now)
            elif entry.info != info:
                self._drop(address)
                entry.info = info
                self._entries[address] = entry
                if entry.down:
                    self._down[info.model] = self._down.get(info.model, 0) + 1
                self._refresh(address, entry, now)
        return added, removed

    def _drop(self, address: str) -> None:
        entry = self._entries.pop(address)
        pool = self._pools.get(entry.info.model)
        if pool is not None:
            pool.remove(address)
        if entry.down:
            self._down[entry.info.model] -= 1

    def addresses(self) -> list[str]:
        return list(self._entries)

    def endpoint(self, address: str) -> DiscoveredEndpoint | None:
        entry = self._entries.get(address)
        return entry.info if entry is not None else None

    def discovered(self) -> list[DiscoveredEndpoint]:
        return [e.info for e in self._entries.values()]

    # -- events -----------------------------------------------------------------------------
    def record_sample(self, address: str, sample: EngineSample, now: float) -> None:
        entry = self._entries.get(address)
        if entry is not None:
            entry.sample, entry.sampled_at = sample, now
            if entry.down:
                self._down[entry.info.model] -= 1
            entry.down, entry.down_reason = False, ""
            heapq.heappush(self._expiry, (now + self._staleness_s, now, address))
            self._refresh(address, entry, now)

    def mark_down(self, address: str, reason: str) -> None:
        entry = self._entries.get(address)
        if entry is not None:
            if not entry.down:
                self._down[entry.info.model] = self._down.get(entry.info.model, 0) + 1
            entry.down, entry.down_reason = True, reason
            self._refresh(address, entry, time.monotonic())

    def is_down(self, address: str) -> bool:
        entry = self._entries.get(address)
        return entry is not None and entry.down

    def inflight_add(self, address: str, delta: int) -> None:
        entry = self._entries.get(address)
        if entry is not None:
            entry.inflight = max(0, entry.inflight + delta)
            if not entry.down:
                pool = self._pools[entry.info.model]
                state = pool.get(address)
                if state is not None:
                    pool.put(_with_inflight(state, entry.inflight))

    def inflight(self, address: str) -> int:
        entry = self._entries.get(address)
        return entry.inflight if entry is not None else 0

    # -- reads ------------------------------------------------------------------------------
    def pool(self, model: str, now: float) -> tuple[EndpointPool, int]:
        """The model's live pool of up endpoints (do not mutate it) and how many are down."""
        self._expire(now)
        pool = self._pools.get(model)
        if pool is None:
            pool = self._pools[model] = EndpointPool()
        return pool, self._down.get(model, 0)

    def states(self, model: str, now: float) -> tuple[list[EndpointState], int]:
        """Snapshots of the model's endpoints that are up; also how many are down."""
        pool, down = self.pool(model, now)
        return pool.values(), down

    def age_s(self, address: str, now: float) -> float | None:
        entry = self._entries.get(address)
        if entry is None or entry.sample is None:
            return None
        return now - entry.sampled_at
