"""vLLM keeps one vllm:lora_requests_info series per adapter set it has ever reported; the
scraper must take the newest (largest value), not the last printed."""

from __future__ import annotations

import pytest

from runtime_components.gateway.scraper import parse_exposition, sample_from_metrics

STALE = 'vllm:lora_requests_info{max_lora="2",running_lora_adapters="sql",waiting_lora_adapters=""} 1795868836.9'
FRESH = 'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1795868842.5'


@pytest.mark.parametrize("lines", [[STALE, FRESH], [FRESH, STALE]], ids=["newest-last", "newest-first"])
def test_the_newest_info_series_wins_whatever_the_order(lines):
    exposition = parse_exposition("\n".join(["# TYPE vllm:lora_requests_info gauge", *lines]) + "\n")
    sample = sample_from_metrics(exposition, None, 0.0, frozenset())
    assert sample.adapters == frozenset() and sample.max_loras == 2


def test_a_running_adapter_in_the_newest_series_counts_as_held():
    exposition = parse_exposition(FRESH.replace('running_lora_adapters=""', 'running_lora_adapters="chat"') + "\n" + STALE + "\n")
    assert sample_from_metrics(exposition, None, 0.0, frozenset()).adapters == frozenset({"chat"})
