"""Tables for the load scorers: least-request, least-kv-cache, least-latency, throughput."""

from __future__ import annotations

import pytest

from runtime_components.gateway.policy.load import (
    LeastKvCacheScorer,
    LeastLatencyScorer,
    LeastRequestScorer,
    ThroughputScorer,
    endpoint_load,
)

from .builders import ep, req

LOAD_CASES = [
    # (endpoint fields, expected load)
    ({}, 0.0),
    ({"inflight": 3}, 3.0),
    ({"running": 4, "waiting": 2}, 6.0),
    ({"running": 4, "waiting": 2, "inflight": 9}, 9.0),  # gateway's own count is fresher
    ({"running": 5, "inflight": 1}, 5.0),  # other replicas' requests show in metrics
    ({"waiting": 3}, 3.0),
]


@pytest.mark.parametrize(("fields", "expected"), LOAD_CASES)
def test_endpoint_load(fields: dict, expected: float) -> None:
    assert endpoint_load(ep(1, **fields)) == expected


SCORER_CASES = [
    # (id, scorer, per-endpoint fields, expected scores in endpoint order)
    ("least-request prefers idle", LeastRequestScorer(), [{"running": 0}, {"running": 3}], [1.0, 0.25]),
    ("least-request relative to min", LeastRequestScorer(), [{"running": 9}, {"running": 19}], [1.0, 0.5]),
    ("least-request uses inflight", LeastRequestScorer(), [{"inflight": 1}, {}], [0.5, 1.0]),
    ("least-request all equal", LeastRequestScorer(), [{"running": 2}, {"running": 2}], [1.0, 1.0]),
    ("kv free space", LeastKvCacheScorer(), [{"kv_cache_usage": 0.25}, {"kv_cache_usage": 0.9}], [0.75, 0.1]),
    ("kv unknown is mean", LeastKvCacheScorer(), [{"kv_cache_usage": 0.0}, {"kv_cache_usage": 0.5}, {}], [1.0, 0.5, 0.75]),
    ("kv all unknown", LeastKvCacheScorer(), [{}, {}], [1.0, 1.0]),
    (
        "latency ttft + tpot*n",
        LeastLatencyScorer(expected_output_tokens=10),
        [{"ttft_s": 0.1, "tpot_s": 0.01}, {"ttft_s": 0.3, "tpot_s": 0.01}],
        [1.0, 0.5],
    ),
    ("latency zero counts best", LeastLatencyScorer(expected_output_tokens=0), [{"ttft_s": 0.0}, {"ttft_s": 1.0}], [1.0, 0.0]),
    ("latency unknown is optimistic", LeastLatencyScorer(expected_output_tokens=0), [{"ttft_s": 1.0}, {"ttft_s": 2.0}, {}], [1.0, 0.5, 1.0]),
    ("latency tpot alone", LeastLatencyScorer(expected_output_tokens=100), [{"tpot_s": 0.01}, {"tpot_s": 0.04}], [1.0, 0.25]),
    ("throughput prefers headroom", ThroughputScorer(), [{"throughput_tps": 99.0}, {"throughput_tps": 199.0}], [1.0, 0.5]),
    ("throughput unknown is mean", ThroughputScorer(), [{"throughput_tps": 0.0}, {}], [1.0, 1.0]),
]


@pytest.mark.parametrize(("scorer", "fields", "expected"), [c[1:] for c in SCORER_CASES], ids=[c[0] for c in SCORER_CASES])
def test_scorer_table(scorer, fields: list[dict], expected: list[float]) -> None:
    endpoints = [ep(i, **f) for i, f in enumerate(fields)]
    scores = scorer.score(req(), endpoints)
    assert [scores[e.address] for e in endpoints] == pytest.approx(expected)
