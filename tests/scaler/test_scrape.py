"""Parsing the scaling metric out of Prometheus text (vLLM's names, labels, several series)."""

from __future__ import annotations

import pytest

from runtime_components.scaler.scrape import parse_metric

TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 3.0
vllm:num_requests_running{engine="1",model_name="llama"} 2.0
vllm:num_requests_running{engine="0",model_name="qwen"} 7.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 4.0
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="llama"} 128.0
"""

CASES = [
    # (names, labels, expected, why)
    (("vllm:num_requests_running",), {}, 12.0, "all series summed"),
    (("vllm:num_requests_running",), {"model_name": "llama"}, 5.0, "label filter"),
    (("vllm:num_requests_running", "vllm:num_requests_waiting"), {"model_name": "llama"}, 9.0, "running + waiting"),
    (("vllm:prefix_cache_hits_total",), {}, 128.0, "counter sample keeps its _total name"),
    (("vllm:num_requests_running",), {"model_name": "mistral"}, None, "no matching series"),
    (("vllm:kv_cache_usage_perc",), {}, None, "absent metric"),
]


@pytest.mark.parametrize(("names", "labels", "expected", "why"), CASES)
def test_parse_metric(names, labels, expected, why):
    assert parse_metric(TEXT, names, labels) == expected, why


def test_parse_metric_rejects_garbage():
    with pytest.raises(ValueError):
        parse_metric("this is { not prometheus\n", ("x",), {})
