"""The engine metric table (aibrix_spec.engine_metrics) and its reader
(runtime_components.common.engine_metrics): names, translation, detection, combining series,
and what is unknown rather than 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibrix_spec.engine_metrics import (
    CANONICAL,
    DIALECTS,
    ENGINES,
    combine_of,
    detect_engine,
    dialect,
    translate_name,
)
from aibrix_spec.models import AUTOSCALING_METRICS
from runtime_components.common.engine_metrics import interval_values, parse_exposition, read_canonical

RECORDED_VLLM = Path(__file__).resolve().parents[1] / "contracts" / "vllm_0_32" / "metrics.txt"

# What real SGLang serves before its first prefix hit (names and label sets of
# python/sglang/srt/metrics/collector.py; tokenizer series appear at their first
# observation, so sglang:cached_tokens_total is still absent). Two data-parallel ranks.
SGLANG_PAGE = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 3.0
sglang:num_running_reqs{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 2.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 1.0
sglang:num_queue_reqs{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 0.0
# TYPE sglang:token_usage gauge
sglang:token_usage{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 0.5
sglang:token_usage{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 0.25
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 0.0
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="qwen"} 8000.0
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="qwen"} 2000.0
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_sum{model_name="qwen"} 6.0
sglang:time_to_first_token_seconds_bucket{le="0.1",model_name="qwen"} 2.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="qwen"} 10.0
sglang:time_to_first_token_seconds_count{model_name="qwen"} 10.0
# TYPE sglang:inter_token_latency_seconds histogram
sglang:inter_token_latency_seconds_sum{model_name="qwen"} 40.0
sglang:inter_token_latency_seconds_count{model_name="qwen"} 1990.0
"""


# -- the table ------------------------------------------------------------------------------


def test_every_dialect_names_its_series_with_its_own_prefix_and_only_canonical_keys():
    for engine, d in DIALECTS.items():
        assert d.engine == engine and d.prefix == f"{engine}:"
        assert set(d.series) <= set(CANONICAL), set(d.series) - set(CANONICAL)
        for canonical, series in d.series.items():
            assert series.names and all(n.startswith(d.prefix) for n in series.names), (engine, canonical)


@pytest.mark.parametrize(("canonical", "sglang_name"), [
    ("running_requests", "sglang:num_running_reqs"),
    ("waiting_requests", "sglang:num_queue_reqs"),
    ("kv_cache_usage", "sglang:token_usage"),
    ("prefix_cache_queried_tokens", "sglang:prompt_tokens_total"),
    ("prefix_cache_hit_tokens", "sglang:cached_tokens_total"),
    ("prompt_tokens", "sglang:prompt_tokens_total"),
    ("generation_tokens", "sglang:generation_tokens_total"),
    ("time_to_first_token", "sglang:time_to_first_token_seconds"),
    ("inter_token_latency", "sglang:inter_token_latency_seconds"),
    ("e2e_request_latency", "sglang:e2e_request_latency_seconds"),
    ("lora_slots", "sglang:lora_pool_slots_total"),
])  # fmt: skip
def test_sglang_names_are_the_ones_sglangs_collector_defines(canonical, sglang_name):
    assert DIALECTS["sglang"].names_of(canonical)[0] == sglang_name


def test_only_lora_info_is_missing_from_sglang_and_vllm_lacks_nothing():
    assert set(CANONICAL) - set(DIALECTS["sglang"].series) == {"lora_info"}
    assert set(CANONICAL) == set(DIALECTS["vllm"].series)


def test_the_sglang_source_is_cited_in_the_table():
    source = DIALECTS["sglang"].source
    assert "https://docs.sglang.io/references/production_metrics.html" in source
    assert "python/sglang/srt/metrics/collector.py" in source


@pytest.mark.parametrize("key", [k for k, m in AUTOSCALING_METRICS.items() if m.source == "engine"])
def test_every_engine_autoscaling_metric_keeps_its_vllm_name_and_maps_to_sglang(key):
    for name in AUTOSCALING_METRICS[key].names:
        assert translate_name(name, "vllm") == (name,)
        sglang = translate_name(name, "sglang")
        assert len(sglang) >= 1 and all(n.startswith("sglang:") for n in sglang), (name, sglang)
        assert translate_name(sglang[0], "vllm")[0] == name  # and back


@pytest.mark.parametrize(("name", "engine", "expected", "why"), [
    ("vllm:num_requests_running", "sglang", ("sglang:num_running_reqs",), "a gauge"),
    ("vllm:time_to_first_token_seconds_count", "sglang", ("sglang:time_to_first_token_seconds_count",), "histogram suffix kept"),
    ("vllm:gpu_cache_usage_perc", "sglang", ("sglang:token_usage",), "an older vLLM name"),
    ("sglang:num_queue_reqs", "vllm", ("vllm:num_requests_waiting",), "the other way"),
    ("vllm:lora_requests_info", "sglang", (), "known, but SGLang has no such series"),
    ("my_custom_metric", "sglang", ("my_custom_metric",), "unknown names pass through"),
])  # fmt: skip
def test_translate_name(name, engine, expected, why):
    assert translate_name(name, engine) == expected, why


def test_an_unknown_dialect_is_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown engine metric dialect 'tgi'; expected one of: vllm, sglang"):
        dialect("tgi")


def test_detect_engine_and_combine_rules():
    assert detect_engine(["python_gc_objects_collected_total", "sglang:num_running_reqs"]) == "sglang"
    assert detect_engine(["process_cpu_seconds_total", "vllm:num_requests_running"]) == "vllm"
    assert detect_engine(["process_cpu_seconds_total"]) is None
    assert combine_of("sglang:token_usage") == combine_of("vllm:kv_cache_usage_perc") == "mean"
    assert combine_of("vllm:num_requests_running") == combine_of("anything_else") == "sum"
    assert ENGINES == ("vllm", "sglang")


# -- the reader -----------------------------------------------------------------------------


def test_a_real_sglang_page_before_any_hit_reads_with_the_hit_ratio_unknown():
    before = read_canonical(parse_exposition(SGLANG_PAGE))
    assert before.engine == "sglang"  # detected
    assert (before.running, before.waiting) == (5.0, 1.0)  # ranks summed
    assert before.kv_cache_usage == pytest.approx(0.375)  # ranks averaged, not summed
    assert before.prefix_hits is None and before.e2e is None and before.lora_slots is None
    later_text = (SGLANG_PAGE.replace("8000.0", "9000.0").replace("2000.0", "2100.0")
                  .replace('_sum{model_name="qwen"} 6.0', '_sum{model_name="qwen"} 8.0')
                  .replace('_count{model_name="qwen"} 10.0', '_count{model_name="qwen"} 14.0'))  # fmt: skip
    later = read_canonical(parse_exposition(later_text), "sglang")
    recent = interval_values(later, before, 10.0)
    assert recent.prefix_hit_ratio is None  # no cached_tokens_total yet: unknown, never 0
    assert recent.ttft_s == pytest.approx(0.5) and recent.throughput_tps == pytest.approx(110.0)
    assert recent.itl_s is None  # no new tokens timed
    hit = read_canonical(parse_exposition(later_text + 'sglang:cached_tokens_total{model_name="qwen"} 250.0\n'), "sglang")
    first_hit = interval_values(hit, later, 1.0)
    assert first_hit.prefix_hit_ratio is None  # absent before: no interval yet
    more = read_canonical(parse_exposition(later_text.replace("9000.0", "10000.0")
                                           + 'sglang:cached_tokens_total{model_name="qwen"} 750.0\n'), "sglang")  # fmt: skip
    assert interval_values(more, hit, 1.0).prefix_hit_ratio == pytest.approx(0.5)


def test_the_recorded_vllm_0_32_page_yields_every_canonical_value():
    snap = read_canonical(parse_exposition(RECORDED_VLLM.read_text()))
    assert snap.engine == "vllm"
    for field in ("running", "waiting", "kv_cache_usage", "prefix_queried", "prefix_hits", "prompt_tokens",
                  "generation_tokens", "ttft", "itl", "e2e", "lora_slots"):  # fmt: skip
        assert getattr(snap, field) is not None, field


def test_a_page_read_in_the_wrong_dialect_is_all_unknown_never_zero():
    snap = read_canonical(parse_exposition(SGLANG_PAGE), "vllm")
    assert (snap.running, snap.waiting, snap.kv_cache_usage, snap.ttft) == (None, None, None, None)


def test_a_dialect_change_between_scrapes_gives_no_interval():
    sglang = read_canonical(parse_exposition(SGLANG_PAGE))
    vllm = read_canonical(parse_exposition(RECORDED_VLLM.read_text()))
    assert interval_values(sglang, vllm, 1.0).throughput_tps is None
