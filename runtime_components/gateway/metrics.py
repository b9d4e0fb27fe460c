"""The gateway's own Prometheus metrics (one registry per gateway instance).

- ``aibrix_gateway_requests_total{model, policy, status}``: finished requests by HTTP status
  (immediate refusals included, policy "none" for those refused before routing; "aborted"
  when the stream ended before a response, e.g. the client went away; "unobserved" when
  Envoy skipped the response phases, so the status is Envoy's to count).
- ``aibrix_gateway_routing_decision_seconds{policy}``: time spent in the router per request.
- ``aibrix_gateway_prefix_match_ratio{model}``: the fraction of prompt blocks the chosen pod
  was known to hold (prefix-cache-aware policies only); its mean is the prefix hit ratio.
- ``aibrix_gateway_rate_limited_total{tier, limit}``: 429s by tier and limit (rpm|tpm).
- ``aibrix_gateway_rate_limit_errors_total``: limiter store failures (Redis down); the gateway
  then serves without limits (fail open) rather than refusing every request.
- ``aibrix_gateway_request_token_buckets_total{model, input_bucket, output_bucket}``: the
  workload histogram the optimizer reads (ARCHITECTURE.md), buckets from
  ``aibrix_spec.token_buckets.bucket_of`` of prompt and completion tokens. A sampled response
  adds the number of requests it stands for (docs/gateway.md).
- ``aibrix_gateway_tokens_total{model, kind}``: prompt and completion tokens counted from usage
  (sampled responses weighted the same way, so an estimate when responses are sampled).
- ``aibrix_gateway_endpoints{model, state}``: endpoints up / down per model.
- ``aibrix_gateway_upstream_failures_total{model}``: routed requests whose endpoint failed.
- ``aibrix_gateway_route_requests_total{route, target}``: requests naming a weighted route, by
  the model they were sent to (the split as it happened).
- ``aibrix_gateway_routing_sync_connected``: 1 while routing state is shared with the other
  gateway processes (Redis or the pod's hub), 0 while this one routes on local state only.
- ``aibrix_gateway_routing_sync_events_total{direction}``: routing-state changes sent,
  applied (from other processes) and dropped (the store was unreachable).
- ``aibrix_gateway_routing_sync_bytes_total``: bytes of batches sent.
- ``aibrix_gateway_kv_event_blocks_total{model, kind}`` (kv-events index mode): blocks applied
  to the index from engines' KV events (kind stored|removed), and blocks not applied
  (unknown_parent, unknown_removed, block_size_mismatch); ``aibrix_gateway_kv_event_batches_total``
  (batches applied, one per engine step), ``aibrix_gateway_kv_event_clears_total``,
  ``aibrix_gateway_kv_event_gaps_total`` (sequence gaps and engine restarts: that engine's
  blocks were forgotten), ``aibrix_gateway_kv_event_decode_errors_total``, per model.
- ``aibrix_gateway_pd_requests_total{model, path}`` (disaggregated models): requests by path,
  ``disaggregated`` (prefilled on a prefill pod), ``short`` (prompt under minPromptTokens,
  decoded in place) or ``fallback`` (decoded in place after the prefill step failed);
  ``aibrix_gateway_pd_fallbacks_total{model, reason}`` why (no_prefill_pod, timeout,
  connect_error, status, bad_answer, error); ``aibrix_gateway_pd_prefill_seconds{model}`` the
  gateway's prefill calls, answered or not (docs/routing.md, "Prefill/decode").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

from aibrix_spec.token_buckets import bucket_of

__all__ = ["GatewayMetrics", "SyncCounters"]


class SyncCounters(Protocol):
    """What ``observe_sync`` reads (``routing_sync.SyncStats``)."""

    connected: bool
    events_sent: int
    events_applied: int
    events_dropped: int
    bytes_sent: int

_BLOCK_KINDS = ("stored", "removed", "unknown_parent", "unknown_removed", "block_size_mismatch")


class _KVEventCollector:
    """Reads the subscribers' plain counters at scrape time (no lock on the event path)."""

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}  # model -> kv_events.SubscriberCounters

    def collect(self) -> Iterator[CounterMetricFamily]:
        blocks = CounterMetricFamily("aibrix_gateway_kv_event_blocks", "Blocks from engines' KV events, by outcome.",
                                     labels=["model", "kind"])
        batches = CounterMetricFamily("aibrix_gateway_kv_event_batches", "KV event batches applied (one per engine step).",
                                      labels=["model"])
        clears = CounterMetricFamily("aibrix_gateway_kv_event_clears", "AllBlocksCleared events.", labels=["model"])
        gaps = CounterMetricFamily("aibrix_gateway_kv_event_gaps", "KV event sequence gaps and restarts.",
                                   labels=["model"])
        errors = CounterMetricFamily("aibrix_gateway_kv_event_decode_errors", "Undecodable KV event messages.",
                                     labels=["model"])
        for model, c in sorted(self.models.items()):
            for kind in _BLOCK_KINDS:
                blocks.add_metric([model, kind], getattr(c, kind))
            batches.add_metric([model], c.batches)
            clears.add_metric([model], c.cleared)
            gaps.add_metric([model], c.gaps)
            errors.add_metric([model], c.decode_errors)
        yield from (batches, blocks, clears, gaps, errors)

_PREFILL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DECISION_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
_RATIO_BUCKETS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


class GatewayMetrics:
    """Holds every metric in a private registry, so several gateways can share a process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("aibrix_gateway_requests", "Requests by model, policy and status.",
                                ["model", "policy", "status"], registry=r)
        self.decision_seconds = Histogram("aibrix_gateway_routing_decision_seconds", "Router time per request.",
                                          ["policy"], buckets=_DECISION_BUCKETS, registry=r)
        self.prefix_match = Histogram("aibrix_gateway_prefix_match_ratio", "Prompt blocks the chosen pod held.",
                                      ["model"], buckets=_RATIO_BUCKETS, registry=r)
        self.rate_limited = Counter("aibrix_gateway_rate_limited", "Requests refused with 429.",
                                    ["tier", "limit"], registry=r)
        self.rate_limit_errors = Counter("aibrix_gateway_rate_limit_errors", "Limiter store failures (served unlimited).",
                                         registry=r)
        self.token_buckets = Counter("aibrix_gateway_request_token_buckets",
                                     "Requests by log2 input and output token bucket.",
                                     ["model", "input_bucket", "output_bucket"], registry=r)
        self.tokens = Counter("aibrix_gateway_tokens", "Tokens counted from responses.", ["model", "kind"], registry=r)
        self.endpoints = Gauge("aibrix_gateway_endpoints", "Endpoints per model and state (up, down; a disaggregated "
                               "model's prefill pods: prefill_up, prefill_down).", ["model", "state"], registry=r)
        self.upstream_failures = Counter("aibrix_gateway_upstream_failures", "Routed requests whose endpoint failed.",
                                         ["model"], registry=r)
        self.route_requests = Counter("aibrix_gateway_route_requests", "Requests of weighted routes by target.",
                                      ["route", "target"], registry=r)
        self.pd_requests = Counter("aibrix_gateway_pd_requests", "Requests of disaggregated models by path.",
                                   ["model", "path"], registry=r)
        self.pd_fallbacks = Counter("aibrix_gateway_pd_fallbacks", "Requests decoded in place after the prefill "
                                    "step failed, by reason.", ["model", "reason"], registry=r)
        self.pd_prefill_seconds = Histogram("aibrix_gateway_pd_prefill_seconds", "The gateway's prefill calls.",
                                            ["model"], buckets=_PREFILL_BUCKETS, registry=r)
        # The per-request series' children by label values: prometheus_client's labels()
        # validates and converts every value under a lock, twice per request otherwise.
        self._request_children: dict[tuple[str, str, str], Any] = {}
        self._decision_children: dict[str, Any] = {}
        self._sync: tuple[Gauge, Counter, Counter] | None = None  # created when a RoutingSync runs
        self._sync_seen: dict[str, int] = {}
        self._kv_events = _KVEventCollector()
        r.register(self._kv_events)  # type: ignore[arg-type]

    def observe_sync(self, stats: SyncCounters) -> None:
        """Bring the routing-sync metrics up to ``stats`` (counters advance by the difference)."""
        if self._sync is None:
            self._sync = (
                Gauge("aibrix_gateway_routing_sync_connected", "Routing state shared with other processes (1/0).",
                      registry=self.registry),
                Counter("aibrix_gateway_routing_sync_events", "Routing-state changes by direction.", ["direction"],
                        registry=self.registry),
                Counter("aibrix_gateway_routing_sync_bytes", "Bytes of routing-state batches sent.", registry=self.registry),
            )
        connected, events, sent_bytes = self._sync
        connected.set(1 if stats.connected else 0)
        now = {"sent": stats.events_sent, "applied": stats.events_applied, "dropped": stats.events_dropped,
               "bytes": stats.bytes_sent}
        for direction in ("sent", "applied", "dropped"):
            events.labels(direction).inc(now[direction] - self._sync_seen.get(direction, 0))
        sent_bytes.inc(now["bytes"] - self._sync_seen.get("bytes", 0))
        self._sync_seen = now

    def track_kv_events(self, model: str, counters: Any) -> None:
        """Export ``counters`` (a ``kv_events.SubscriberCounters``) for ``model``."""
        self._kv_events.models[model] = counters

    def count_request(self, model: str, policy: str, status: str) -> None:
        """One request settled (``aibrix_gateway_requests``)."""
        key = (model, policy, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(model, policy, status)
        child.inc()

    def observe_decision(self, policy: str, seconds: float) -> None:
        """One routing decision's time (``aibrix_gateway_routing_decision_seconds``)."""
        child = self._decision_children.get(policy)
        if child is None:
            child = self._decision_children[policy] = self.decision_seconds.labels(policy)
        child.observe(seconds)

    def observe_usage(self, model: str, prompt_tokens: int, completion_tokens: int, weight: int = 1) -> None:
        """One read response; ``weight`` > 1 when it is a sample standing for unread requests too."""
        self.tokens.labels(model, "prompt").inc(prompt_tokens * weight)
        self.tokens.labels(model, "completion").inc(completion_tokens * weight)
        self.token_buckets.labels(model, str(bucket_of(prompt_tokens)), str(bucket_of(completion_tokens))).inc(weight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
