"""The gateway's table of endpoints: what discovery found, what scraping measured, what the
gateway itself has in flight. Routing reads it as ``EndpointState`` snapshots.

Freshness rules: scraped metrics older than ``staleness_s`` are reported as unknown (None),
never as zero, so a silent engine does not look idle. The in-flight count is the gateway's
own and always fresh. An endpoint whose connection failed (a scrape refused, or Envoy
reporting a connect failure / reset for a routed request) leaves the candidate set until a
later scrape succeeds, so the next requests avoid it even before discovery notices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime_components.gateway.policy.types import EndpointState

__all__ = ["DiscoveredEndpoint", "EngineSample", "EndpointTable"]


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
    extra: dict[str, float] = field(default_factory=dict)


class EndpointTable:
    """Mutable state of every endpoint, owned by the gateway's event loop (no locks)."""

    def __init__(self, staleness_s: float) -> None:
        self._staleness_s = staleness_s
        self._entries: dict[str, _Entry] = {}

    def replace(self, endpoints: list[DiscoveredEndpoint]) -> tuple[list[str], list[str]]:
        """Make the table hold exactly ``endpoints``; return (added, removed) addresses."""
        wanted = {e.address: e for e in endpoints}
        removed = [a for a in self._entries if a not in wanted]
        added = [a for a in wanted if a not in self._entries]
        for address in removed:
            del self._entries[address]
        for address, info in wanted.items():
            entry = self._entries.get(address)
            if entry is None:
                self._entries[address] = _Entry(info)
            elif entry.info != info:
                entry.info = info
        return added, removed

    def addresses(self) -> list[str]:
        return list(self._entries)

    def endpoint(self, address: str) -> DiscoveredEndpoint | None:
        entry = self._entries.get(address)
        return entry.info if entry is not None else None

    def discovered(self) -> list[DiscoveredEndpoint]:
        return [e.info for e in self._entries.values()]

    def record_sample(self, address: str, sample: EngineSample, now: float) -> None:
        entry = self._entries.get(address)
        if entry is not None:
            entry.sample, entry.sampled_at = sample, now
            entry.down, entry.down_reason = False, ""

    def mark_down(self, address: str, reason: str) -> None:
        entry = self._entries.get(address)
        if entry is not None:
            entry.down, entry.down_reason = True, reason

    def is_down(self, address: str) -> bool:
        entry = self._entries.get(address)
        return entry is not None and entry.down

    def inflight_add(self, address: str, delta: int) -> None:
        entry = self._entries.get(address)
        if entry is not None:
            entry.inflight = max(0, entry.inflight + delta)

    def inflight(self, address: str) -> int:
        entry = self._entries.get(address)
        return entry.inflight if entry is not None else 0

    def states(self, model: str, now: float) -> tuple[list[EndpointState], int]:
        """Snapshots of the model's endpoints that are up; also how many are down."""
        out: list[EndpointState] = []
        down = 0
        for address, entry in self._entries.items():
            if entry.info.model != model:
                continue
            if entry.down:
                down += 1
                continue
            fresh = entry.sample if entry.sample is not None and now - entry.sampled_at <= self._staleness_s else None
            adapters = entry.info.adapters | (entry.sample.adapters if entry.sample is not None else frozenset())
            out.append(
                EndpointState(
                    address=address,
                    pod=entry.info.pod,
                    model=model,
                    adapters=adapters,
                    running=fresh.running if fresh else None,
                    waiting=fresh.waiting if fresh else None,
                    kv_cache_usage=fresh.kv_cache_usage if fresh else None,
                    ttft_s=fresh.ttft_s if fresh else None,
                    tpot_s=fresh.tpot_s if fresh else None,
                    throughput_tps=fresh.throughput_tps if fresh else None,
                    prefix_hit_ratio=fresh.prefix_hit_ratio if fresh else None,
                    inflight=entry.inflight,
                    max_loras=entry.sample.max_loras if entry.sample is not None else None,
                )
            )
        return out, down

    def age_s(self, address: str, now: float) -> float | None:
        entry = self._entries.get(address)
        if entry is None or entry.sample is None:
            return None
        return now - entry.sampled_at
