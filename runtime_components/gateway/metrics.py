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
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from aibrix_spec.token_buckets import bucket_of

__all__ = ["GatewayMetrics"]

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
        self.endpoints = Gauge("aibrix_gateway_endpoints", "Endpoints per model and state.", ["model", "state"], registry=r)
        self.upstream_failures = Counter("aibrix_gateway_upstream_failures", "Routed requests whose endpoint failed.",
                                         ["model"], registry=r)

    def observe_usage(self, model: str, prompt_tokens: int, completion_tokens: int, weight: int = 1) -> None:
        """One read response; ``weight`` > 1 when it is a sample standing for unread requests too."""
        self.tokens.labels(model, "prompt").inc(prompt_tokens * weight)
        self.tokens.labels(model, "completion").inc(completion_tokens * weight)
        self.token_buckets.labels(model, str(bucket_of(prompt_tokens)), str(bucket_of(completion_tokens))).inc(weight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
