"""Render an ``EngineStats`` snapshot as vLLM's Prometheus ``/metrics`` text.

Where it sits: the HTTP server calls ``render_metrics`` for every scrape. Names, types and
labels are vLLM 0.32's (checked against ``vllm/v1/metrics/loggers.py`` and a recorded real
scrape, ``tests/contracts/vllm_0_32/metrics.txt``): gauges and counters carry
``model_name`` and ``engine``; ``request_success`` adds ``finished_reason``;
``lora_requests_info`` carries ``max_lora``, ``running_lora_adapters`` and
``waiting_lora_adapters`` and its value is a timestamp, as in vLLM. The legacy
``vllm:time_per_output_token_seconds`` (renamed ``inter_token_latency_seconds`` in newer
vLLM) is also exposed for dashboards and gateways that still read it.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from .histograms import HistogramSnapshot
from .stats import EngineStats

__all__ = ["render_metrics", "FINISH_REASONS"]

FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
_LABELS = ["engine", "model_name"]

_HISTOGRAM_HELP = {
    "time_to_first_token_seconds": "Histogram of time to first token in seconds.",
    "inter_token_latency_seconds": "Histogram of inter-token latency in seconds.",
    "request_time_per_output_token_seconds": "Histogram of time_per_output_token_seconds per request.",
    "e2e_request_latency_seconds": "Histogram of e2e request latency in seconds.",
    "request_queue_time_seconds": "Histogram of time spent in WAITING phase for request.",
    "request_inference_time_seconds": "Histogram of time spent in RUNNING phase for request.",
    "request_prefill_time_seconds": "Histogram of time spent in PREFILL phase for request.",
    "request_decode_time_seconds": "Histogram of time spent in DECODE phase for request.",
    "request_prompt_tokens": "Number of prefill tokens processed.",
    "request_generation_tokens": "Number of generation tokens processed.",
}


def _histogram(name: str, help_text: str, snap: HistogramSnapshot, labels: list[str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(f"vllm:{name}", help_text, labels=_LABELS)
    family.add_metric(labels, [(le, float(n)) for le, n in snap.cumulative()], sum_value=snap.total)
    return family


class _StatsCollector(Collector):
    def __init__(
        self, stats: EngineStats, model_name: str, engine: str, max_loras: int, now_unix: float,
        block_size: int, enable_prefix_caching: bool,
    ) -> None:  # fmt: skip
        self.stats, self.model_name, self.engine = stats, model_name, engine
        self.max_loras, self.now_unix = max_loras, now_unix
        self.block_size, self.enable_prefix_caching = block_size, enable_prefix_caching

    def collect(self) -> Iterator[Metric]:
        s, lv = self.stats, [self.engine, self.model_name]
        gauges = (
            ("num_requests_running", "Number of requests in model execution batches.", s.num_running),
            ("num_requests_waiting", "Number of requests waiting to be processed.", s.num_waiting),
            ("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", s.kv_cache_usage),
        )
        for name, help_text, value in gauges:
            g = GaugeMetricFamily(f"vllm:{name}", help_text, labels=_LABELS)
            g.add_metric(lv, float(value))
            yield g
        counters = (
            ("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", s.prefix_cache_queries),
            ("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", s.prefix_cache_hits),
            (
                "external_prefix_cache_queries",
                "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number "
                "of queried tokens.",
                s.external_prefix_cache_queries,
            ),
            (
                "external_prefix_cache_hits",
                "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of "
                "cached tokens.",
                s.external_prefix_cache_hits,
            ),
            ("num_preemptions", "Cumulative number of preemption from the engine.", s.num_preemptions),
            ("prompt_tokens", "Number of prefill tokens processed.", s.prompt_tokens),
            (
                "prompt_tokens_cached",
                "Number of cached prompt tokens (local + external).",
                s.prefix_cache_hits + s.external_prefix_cache_hits,
            ),
            ("generation_tokens", "Number of generation tokens processed.", s.generation_tokens),
        )
        for name, help_text, value in counters:
            c = CounterMetricFamily(f"vllm:{name}", help_text, labels=_LABELS)
            c.add_metric(lv, float(value))
            yield c
        success = CounterMetricFamily(
            "vllm:request_success", "Count of successfully processed requests.", labels=[*_LABELS, "finished_reason"]
        )
        by_reason = {"length": s.request_success, "abort": s.num_aborted}
        for reason in FINISH_REASONS:
            success.add_metric([*lv, reason], float(by_reason.get(reason, 0)))
        yield success
        for key, help_text in _HISTOGRAM_HELP.items():
            snap = s.histograms.get(key)
            if snap is not None:
                yield _histogram(key, help_text, snap, lv)
        itl = s.histograms.get("inter_token_latency_seconds")
        if itl is not None:
            yield _histogram(
                "time_per_output_token_seconds", "Histogram of time per output token in seconds (legacy name).", itl, lv
            )
        lora = GaugeMetricFamily(
            "vllm:lora_requests_info",
            "Running stats on lora requests.",
            labels=["max_lora", "running_lora_adapters", "waiting_lora_adapters"],
        )
        lora.add_metric(
            [str(self.max_loras), ",".join(s.running_adapters), ",".join(s.waiting_adapters)], self.now_unix
        )
        yield lora
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            labels=["block_size", "enable_prefix_caching", "engine", "num_gpu_blocks"],
        )
        info.add_metric(
            [str(self.block_size), str(self.enable_prefix_caching), self.engine, str(s.num_gpu_blocks)], 1.0
        )
        yield info


def render_metrics(
    stats: EngineStats, *, model_name: str, engine: str = "0", max_loras: int = 0, now_unix: float = 0.0,
    block_size: int = 16, enable_prefix_caching: bool = True,
) -> bytes:  # fmt: skip
    """Prometheus text exposition (format 0.0.4) of one engine's snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        _StatsCollector(stats, model_name, engine, max_loras, now_unix, block_size, enable_prefix_caching)
    )
    return generate_latest(registry)
