"""The pieces of several workers per pod and of response sampling, without processes.

- ``merge_pages``: the pod's /metrics page from the workers' pages (counters and histograms
  summed, gauges the largest, ``_created`` the earliest; output parseable and ordered);
- ``WorkloadSampler``: a sample stands for the unread requests of its model before it.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from runtime_components.gateway.extproc import WorkloadSampler
from runtime_components.gateway.metrics import GatewayMetrics
from runtime_components.gateway.metrics_merge import merge_pages


def _values(page: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(page.decode()) for s in f.samples}


def test_workers_pages_merge_into_pod_totals():
    a, b = GatewayMetrics(), GatewayMetrics()
    a.requests.labels("m", "least-request", "200").inc(3)
    b.requests.labels("m", "least-request", "200").inc(4)
    b.requests.labels("m", "least-request", "429").inc()
    a.decision_seconds.labels("least-request").observe(0.0003)
    b.decision_seconds.labels("least-request").observe(0.02)
    a.endpoints.labels("m", "up").set(3)
    b.endpoints.labels("m", "up").set(3)
    a.observe_usage("m", 100, 10, weight=5)
    merged = merge_pages([a.render().decode(), b.render().decode()])
    values = _values(merged)
    assert values[("aibrix_gateway_requests_total", (("model", "m"), ("policy", "least-request"), ("status", "200")))] == 7
    assert values[("aibrix_gateway_requests_total", (("model", "m"), ("policy", "least-request"), ("status", "429")))] == 1
    assert values[("aibrix_gateway_endpoints", (("model", "m"), ("state", "up")))] == 3  # a shared fact, not 6
    assert values[("aibrix_gateway_routing_decision_seconds_count", (("policy", "least-request"),))] == 2
    assert values[("aibrix_gateway_routing_decision_seconds_bucket", (("le", "0.0005"), ("policy", "least-request")))] == 1
    assert values[("aibrix_gateway_request_token_buckets_total",
                   (("input_bucket", "128"), ("model", "m"), ("output_bucket", "16")))] == 5
    assert values[("aibrix_gateway_tokens_total", (("kind", "prompt"), ("model", "m")))] == 500
    lines = merged.decode().splitlines()
    bounds = [line.split('le="', 1)[1].split('"', 1)[0] for line in lines
              if line.startswith("aibrix_gateway_routing_decision_seconds_bucket")]
    assert bounds[-1] == "+Inf" and [float(b) for b in bounds[:-1]] == sorted(float(b) for b in bounds[:-1])


def test_merging_is_deterministic_whatever_the_worker_order():
    a, b = GatewayMetrics(), GatewayMetrics()
    a.requests.labels("x", "p", "200").inc()
    b.requests.labels("a", "p", "200").inc()
    pages = [a.render().decode(), b.render().decode()]
    first, second = merge_pages(pages), merge_pages(pages[::-1])
    strip = lambda page: [line for line in page.decode().splitlines() if "_created" not in line]  # noqa: E731
    assert strip(first) == strip(second)


def test_a_sample_stands_for_the_unread_requests_of_its_model():
    sampler = WorkloadSampler(0)  # never due: weights only
    assert not sampler.due()
    for _ in range(3):
        sampler.skipped("m")
    sampler.skipped("other")
    assert sampler.take("m") == 4  # itself and the three before it
    assert sampler.take("m") == 1
    sampler.give_back("m", 4)  # a failed sample: the next one carries its weight
    assert sampler.take("m") == 5
    assert sampler.take("other") == 2
