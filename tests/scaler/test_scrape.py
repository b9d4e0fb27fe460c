"""Parsing the scaling metric out of Prometheus text (vLLM's and SGLang's names, labels, several series)."""

from __future__ import annotations

import pytest

from runtime_components.scaler.freshness import FrozenDetector
from runtime_components.scaler.scrape import parse_metric, parse_pod_sample

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


# -- metric dialects: the same config reads SGLang pods (aibrix_spec.engine_metrics) --------

SGLANG_TEXT = """\
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{dp_rank="0",engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 3.0
sglang:num_running_reqs{dp_rank="1",engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 2.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{dp_rank="0",engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 4.0
# TYPE sglang:token_usage gauge
sglang:token_usage{dp_rank="0",engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 0.6
sglang:token_usage{dp_rank="1",engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 0.2
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="llama"} 500.0
# TYPE sglang:inter_token_latency_seconds histogram
sglang:inter_token_latency_seconds_sum{model_name="llama"} 9.0
sglang:inter_token_latency_seconds_count{model_name="llama"} 300.0
"""


@pytest.mark.parametrize(("names", "engine", "expected", "why"), [
    (("vllm:num_requests_running",), "sglang", 5.0, "vLLM name read as sglang:num_running_reqs, ranks summed"),
    (("vllm:num_requests_running", "vllm:num_requests_waiting"), "sglang", 9.0, "concurrency"),
    (("vllm:kv_cache_usage_perc",), "sglang", 0.4, "a ratio: ranks averaged"),
    (("vllm:num_requests_running",), None, 5.0, "dialect detected from the names"),
    (("sglang:num_queue_reqs",), None, 4.0, "SGLang's own name"),
])  # fmt: skip
def test_parse_pod_sample_reads_sglang_pages_through_the_table(names, engine, expected, why):
    sample = parse_pod_sample(SGLANG_TEXT, names, {"model_name": "llama"}, engine)
    assert sample is not None and sample.value == pytest.approx(expected), why


def test_a_page_of_the_other_dialect_has_no_sample():
    assert parse_pod_sample(SGLANG_TEXT, ("vllm:num_requests_running",), {}, "vllm") is None
    assert parse_pod_sample(TEXT, ("vllm:num_requests_running",), {}, "sglang") is None


def test_sglang_progress_includes_the_inter_token_count():
    sample = parse_pod_sample(SGLANG_TEXT, ("vllm:num_requests_running",), {}, "sglang")
    assert sample is not None and sorted(sample.progress) == [300.0, 500.0]
    vllm_page = TEXT + "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{engine=\"0\"} 64.0\n"
    vllm = parse_pod_sample(vllm_page, ("vllm:num_requests_running",), {}, "vllm")
    assert vllm is not None and vllm.progress == (64.0,)  # no extra series for vLLM: its counters move per token


def test_an_sglang_pod_with_running_requests_and_no_finished_one_is_not_frozen():
    """SGLang counts tokens when a request finishes; the inter-token count moves meanwhile."""
    detector = FrozenDetector(frozen_after_seconds=30)
    for second in range(0, 121, 10):
        page = SGLANG_TEXT.replace("_count{model_name=\"llama\"} 300.0", f"_count{{model_name=\"llama\"}} {300 + second}")
        sample = parse_pod_sample(page, ("vllm:num_requests_running",), {}, "sglang")
        assert sample is not None and detector.check("pod", float(second), sample) is None, second
    stuck = parse_pod_sample(SGLANG_TEXT, ("vllm:num_requests_running",), {}, "sglang")
    detector = FrozenDetector(frozen_after_seconds=30)
    verdicts = [detector.check("pod", float(t), stuck) for t in (0, 10, 20, 30)]
    assert verdicts[:3] == [None] * 3 and verdicts[3] is not None and "no counter moved" in verdicts[3]


def test_a_pod_that_does_not_answer_in_time_is_named_with_the_reason():
    """A timeout's own message is empty; the error must still say what happened."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from runtime_components.scaler.kube import PodEndpoint
    from runtime_components.scaler.scrape import read_engine_pods
    from tests.scaler.helpers import serve

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        return web.Response(text="")

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def scenario() -> tuple[str, ...]:
        app = web.Application()
        app.router.add_get("/slow", slow)
        app.router.add_get("/broken", broken)
        async with serve(app) as base, aiohttp.ClientSession() as session:
            port = int(base.rsplit(":", 1)[1])
            readings = []
            for path in ("/slow", "/broken"):
                readings.append(await read_engine_pods(
                    session, [PodEndpoint(name="p", ip="127.0.0.1", port=port, ready=True)],
                    names=("vllm:num_requests_running",), labels={}, default_port=port, path=path, timeout_s=0.2))
        return tuple(e for r in readings for e in r.errors)

    slow_error, broken_error = asyncio.run(scenario())
    assert slow_error.endswith("/slow: no answer within 0.2 s"), slow_error
    assert broken_error.endswith("/broken: HTTP 500"), broken_error
