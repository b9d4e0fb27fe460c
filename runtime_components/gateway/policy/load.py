"""Load-balancing scorers: least-request, least-kv-cache, least-latency, throughput.

Where it sits: ``Scorer`` plugins (see ``base``) built by ``registry``; each reads only
the ``EndpointState`` snapshot. All are relative to the best candidate, so the best
endpoint scores 1 and the scale of the metric does not matter.

- **load** (shared with prefix-cache-aware's guard): ``load(e) = max(inflight, running + waiting)``.
  The gateway's in-flight count is fresh but misses other gateway replicas' requests;
  scraped running + waiting sees every replica's requests but lags a scrape interval. The
  larger is the safer estimate. Unknown running/waiting -> ``inflight`` alone.
- least-request: ``(1 + min_load) / (1 + load(e))``.
- least-kv-cache: ``1 - kv_cache_usage(e)``.
- least-latency: estimated latency ``lat(e) = ttft_s + tpot_s * expected_output_tokens``;
  score ``min_lat / lat(e)`` (1 when ``lat(e)`` is 0 or unknown: see the scorer).
- throughput: prefers the endpoint producing the fewest tokens/s now (most headroom):
  ``(1 + min_tps) / (1 + throughput_tps(e))``.

Unknown (``None``) gauges are neutral: an endpoint with an unknown value gets the mean
score of the endpoints whose value is known (all 1 when none is known), so a freshly
started pod is neither shunned nor flooded. Latency is the exception (optimistic, see
``LeastLatencyScorer``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from .types import EndpointState, RouteRequest, endpoint_load

if TYPE_CHECKING:
    from .pool import EndpointPool

__all__ = [
    "LeastKvCacheScorer",
    "LeastLatencyScorer",
    "LeastRequestScorer",
    "ThroughputScorer",
    "endpoint_load",
]


def score_known(
    endpoints: Sequence[EndpointState],
    value: Callable[[EndpointState], float | None],
    relative: Callable[[float, list[float]], float],
) -> dict[str, float]:
    """Score endpoints whose ``value`` is known with ``relative(v, known)``; unknown ones get the mean."""
    known: list[float] = []
    for e in endpoints:
        v = value(e)
        if v is not None:
            known.append(v)
    scores: dict[str, float] = {}
    for e in endpoints:
        v = value(e)
        if v is not None:
            scores[e.address] = relative(v, known)
    neutral = sum(scores.values()) / len(scores) if scores else 1.0
    return {e.address: scores.get(e.address, neutral) for e in endpoints}


class LeastRequestScorer:
    """Prefers the endpoint with the fewest queued + running requests (``endpoint_load``)."""

    name = "least-request"
    shortlist_kind: Literal["dense"] = "dense"

    def shortlist(self, req: RouteRequest, pool: EndpointPool, k: int) -> list[EndpointState]:
        """The ``k`` least-loaded endpoints, from the pool's load index."""
        return pool.least_loaded(k)

    def score(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> Mapping[str, float]:
        # Runs on every request: plain loops, no comprehension frames.
        loads = []
        for e in endpoints:
            loads.append(endpoint_load(e))
        top = 1.0 + min(loads, default=0.0)
        scores = {}
        for e, load in zip(endpoints, loads):
            scores[e.address] = top / (1.0 + load)
        return scores


class LeastKvCacheScorer:
    """Prefers the endpoint with the most free KV cache: ``1 - kv_cache_usage`` (canonical, any engine)."""

    name = "least-kv-cache"

    def score(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> Mapping[str, float]:
        return score_known(endpoints, lambda e: e.kv_cache_usage, lambda v, _known: 1.0 - v)


class LeastLatencyScorer:
    """Prefers the endpoint with the lowest recent latency, ``ttft + tpot * expected_output_tokens``."""

    name = "least-latency"

    def __init__(self, expected_output_tokens: int) -> None:
        self._output_tokens = expected_output_tokens

    def _latency(self, e: EndpointState) -> float | None:
        if e.ttft_s is None and e.tpot_s is None:
            return None
        return (e.ttft_s or 0.0) + (e.tpot_s or 0.0) * self._output_tokens

    def score(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> Mapping[str, float]:
        # Unknown latency scores 1, not the mean: the gateway derives latency from histogram
        # deltas between scrapes, so "unknown" means no first token there lately, i.e. a pod
        # that was sent nothing. Treating it as average starves it and herds every request
        # onto the pods that have data (measured: 6-24x worse mean TTFT in benchmarks.routing).
        latencies = {e.address: self._latency(e) for e in endpoints}
        known = [v for v in latencies.values() if v is not None]
        best = min(known, default=0.0)
        return {a: 1.0 if v is None or v <= 0 else best / v for a, v in latencies.items()}


class ThroughputScorer:
    """Prefers the endpoint with the lowest current token throughput (the most headroom)."""

    name = "throughput"

    def score(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> Mapping[str, float]:
        return score_known(
            endpoints,
            lambda e: e.throughput_tps,
            lambda v, known: (1.0 + min(known)) / (1.0 + max(v, 0.0)),
        )
