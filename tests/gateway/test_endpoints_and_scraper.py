"""Endpoint table freshness rules, metric parsing, and scraping a live fake engine."""

import asyncio
import dataclasses

import pytest

from runtime_components.gateway.endpoints import DiscoveredEndpoint, EndpointTable, EngineSample
from runtime_components.gateway.scraper import MetricScraper, adapters_from_models, parse_exposition, sample_from_metrics

from .fake_engine import FakeEngine

VLLM_TEXT = """# HELP vllm:num_requests_running Number of requests running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 12.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 10.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 2.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 100.0
vllm:prompt_tokens_total{engine="0",model_name="m"} 1000.0
vllm:generation_tokens_total{engine="0",model_name="m"} 500.0
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql,chat",waiting_lora_adapters=""} 1.7e9
"""


def test_parse_exposition_sums_counts_series_and_keeps_info_labels():
    exposition = parse_exposition(VLLM_TEXT + 'vllm:num_requests_running{engine="1",model_name="m"} 1\n')
    assert exposition.sums["vllm:num_requests_running"] == 4.0 and exposition.series["vllm:num_requests_running"] == 2
    assert exposition.info["vllm:lora_requests_info"] == {"max_lora": "4", "running_lora_adapters": "sql,chat", "waiting_lora_adapters": ""}


def test_sample_uses_deltas_between_scrapes():
    before = parse_exposition(VLLM_TEXT)
    later = (VLLM_TEXT.replace("seconds_sum{engine=\"0\",model_name=\"m\"} 12.0", "seconds_sum{engine=\"0\",model_name=\"m\"} 14.0")
             .replace("seconds_count{engine=\"0\",model_name=\"m\"} 10.0", "seconds_count{engine=\"0\",model_name=\"m\"} 14.0")
             .replace("generation_tokens_total{engine=\"0\",model_name=\"m\"} 500.0", "generation_tokens_total{engine=\"0\",model_name=\"m\"} 700.0"))
    now = parse_exposition(later)
    sample = sample_from_metrics(now, before, 2.0, frozenset({"extra"}))
    assert (sample.running, sample.waiting, sample.kv_cache_usage) == (3.0, 2.0, 0.25)
    assert sample.ttft_s == pytest.approx(0.5)  # 2 s over 4 new requests
    assert sample.tpot_s is None  # no new tokens timed
    assert sample.throughput_tps == pytest.approx(100.0)  # 200 tokens in 2 s
    assert sample.max_loras == 4 and sample.adapters == {"sql", "chat", "extra"}
    first = sample_from_metrics(now, None, 0.0, frozenset())
    assert first.ttft_s is None and first.throughput_tps is None


@pytest.mark.parametrize("payload,expected", [
    ({"data": [{"id": "m", "parent": None}, {"id": "sql", "parent": "m"}]}, {"sql"}),
    ({"data": [{"id": "m"}]}, set()),
    ({"nothing": 1}, set()),
    ([1, 2], set()),
])
def test_adapters_from_models(payload, expected):
    assert adapters_from_models(payload) == expected


def test_table_reports_stale_metrics_as_unknown_and_skips_down_endpoints():
    table = EndpointTable(staleness_s=3.0)
    added, removed = table.replace([DiscoveredEndpoint("10.0.0.1:8000", "a", "m"), DiscoveredEndpoint("10.0.0.2:8000", "b", "m"),
                                    DiscoveredEndpoint("10.0.0.3:8000", "c", "other")])
    assert len(added) == 3 and removed == []
    table.record_sample("10.0.0.1:8000", EngineSample(running=5, waiting=1, kv_cache_usage=0.5), now=100.0)
    table.inflight_add("10.0.0.1:8000", 2)
    fresh, down = table.states("m", now=102.0)
    assert [(s.address, s.running, s.inflight) for s in fresh] == [("10.0.0.1:8000", 5, 2), ("10.0.0.2:8000", None, 0)]
    stale, _ = table.states("m", now=104.0)
    assert stale[0].running is None and stale[0].kv_cache_usage is None and stale[0].inflight == 2
    table.mark_down("10.0.0.2:8000", "refused")
    up, down = table.states("m", now=102.0)
    assert [s.address for s in up] == ["10.0.0.1:8000"] and down == 1
    table.record_sample("10.0.0.2:8000", EngineSample(), now=103.0)  # a good scrape brings it back
    assert len(table.states("m", now=103.0)[0]) == 2
    _, removed = table.replace([DiscoveredEndpoint("10.0.0.2:8000", "b", "m")])
    assert sorted(removed) == ["10.0.0.1:8000", "10.0.0.3:8000"]


def test_scraper_reads_a_live_engine_and_marks_a_dead_one_down():
    engine = FakeEngine("e", "m", adapters=("sql",), running=4).start()
    try:
        table = EndpointTable(staleness_s=5.0)
        table.replace([DiscoveredEndpoint(engine.address, "e", "m"), DiscoveredEndpoint("127.0.0.1:9", "dead", "m")])
        downs: list[str] = []
        scraper = MetricScraper(table, interval_s=0.1, timeout_s=2.0, on_down=lambda a, r: downs.append(a))

        async def run():
            await scraper.scrape_once()
            await scraper.close()

        asyncio.run(run())
        import time

        states, down = table.states("m", time.monotonic())
        assert down == 1 and downs == ["127.0.0.1:9"]
        assert len(states) == 1
        assert states[0].running == 4 and states[0].kv_cache_usage == 0.1
        assert states[0].adapters == {"sql"} and states[0].max_loras == 2
    finally:
        engine.stop()


def test_an_inflight_change_keeps_every_other_field_of_the_endpoint():
    table = EndpointTable(staleness_s=60)
    table.replace([DiscoveredEndpoint("10.0.0.1:8000", "pod-a", "m", adapters=frozenset({"lora-x"}))])
    table.record_sample("10.0.0.1:8000", EngineSample(running=3.0, waiting=1.0, kv_cache_usage=0.5), now=0.0)
    pool, _ = table.pool("m", now=1.0)
    before = pool.get("10.0.0.1:8000")
    table.inflight_add("10.0.0.1:8000", 2)
    after = table.pool("m", now=1.0)[0].get("10.0.0.1:8000")
    assert after == dataclasses.replace(before, inflight=2)
    assert before.inflight == 0  # a snapshot a router holds does not change under it
    table.inflight_add("10.0.0.1:8000", -5)
    assert table.pool("m", now=1.0)[0].get("10.0.0.1:8000").inflight == 0


def test_an_inflight_update_copies_every_other_field_of_the_snapshot():
    from runtime_components.gateway.endpoints import _with_inflight
    from runtime_components.gateway.policy.types import EndpointState

    values = {"address": "10.0.0.7:8000", "pod": "p-1", "model": "m", "adapters": frozenset({"a"}), "inflight": 3}
    for f in dataclasses.fields(EndpointState):  # every other field set away from its default
        if f.name not in values:
            values[f.name] = 7 if f.name == "max_loras" else 0.25
    state = EndpointState(**values)
    copy = _with_inflight(state, 9)
    assert copy == dataclasses.replace(state, inflight=9) and copy is not state
    assert state.inflight == 3  # the original snapshot is untouched
