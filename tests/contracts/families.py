"""Metric families as a contract: name -> (type, label names), parsed with prometheus_client.

``READ_BY_PROJECT`` lists every vLLM family a component of this project reads (gateway
scraper, scaler, optimizer, benchmarks). The simulated engine must expose each of them with
the same type and labels as real vLLM.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

RECORDED = Path(__file__).resolve().parent / "vllm_0_32"

READ_BY_PROJECT: tuple[str, ...] = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:external_prefix_cache_queries",
    "vllm:external_prefix_cache_hits",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:request_success",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:request_time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:lora_requests_info",
)


def families(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Family name (without _total) -> (type, the union of label names over its samples)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for fam in text_string_to_metric_families(text):
        labels: set[str] = set()
        for sample in fam.samples:
            labels.update(k for k in sample.labels if k not in ("le", "quantile"))
        out[fam.name] = (fam.type, frozenset(labels))
    return out


def recorded_families() -> dict[str, tuple[str, frozenset[str]]]:
    return families((RECORDED / "metrics.txt").read_text())


def contract_diff(actual: dict[str, tuple[str, frozenset[str]]], expected: dict[str, tuple[str, frozenset[str]]]) -> list[str]:
    """Human-readable differences over READ_BY_PROJECT; empty when the contract holds."""
    problems = []
    for name in READ_BY_PROJECT:
        if name not in expected:
            problems.append(f"{name}: not in the reference (update READ_BY_PROJECT or re-record)")
        elif name not in actual:
            problems.append(f"{name}: missing")
        elif actual[name] != expected[name]:
            problems.append(f"{name}: {actual[name][0]} {sorted(actual[name][1])} != reference {expected[name][0]} {sorted(expected[name][1])}")
    return problems
