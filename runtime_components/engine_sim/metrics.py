"""Render an ``EngineStats`` snapshot as an engine's Prometheus ``/metrics`` text.

Where it sits: the HTTP server calls ``render_metrics`` for every scrape, in the engine's
metric dialect (``--metrics-dialect``): ``vllm`` (the default) or ``sglang``, so the same
simulated state can be read both ways (``aibrix_spec.engine_metrics`` maps the two).

vLLM dialect. Names, types and
labels are vLLM 0.32's (checked against ``vllm/v1/metrics/loggers.py`` and a recorded real
scrape, ``tests/contracts/vllm_0_32/metrics.txt``): gauges and counters carry
``model_name`` and ``engine``; ``request_success`` adds ``finished_reason``;
``lora_requests_info`` carries ``max_lora``, ``running_lora_adapters`` and
``waiting_lora_adapters`` and its value is a timestamp, as in vLLM. The legacy
``vllm:time_per_output_token_seconds`` (renamed ``inter_token_latency_seconds`` in newer
vLLM) is also exposed for dashboards and gateways that still read it.

SGLang dialect (names and labels from SGLang's ``python/sglang/srt/metrics/collector.py``
and its Production Metrics page). Scheduler gauges (``sglang:num_running_reqs``,
``num_queue_reqs``, ``token_usage``, ``num_used_tokens``, ``max_total_num_tokens``,
``cache_hit_rate``, and ``lora_pool_slots_total``/``_used`` when adapters are enabled) carry
``model_name``, ``engine_type="unified"``, ``tp_rank`` and ``pp_rank``; tokenizer counters
(``prompt_tokens_total``, ``generation_tokens_total``, ``cached_tokens_total``,
``num_requests_total``, ``num_aborted_requests_total``) and histograms
(``time_to_first_token_seconds``, ``inter_token_latency_seconds``,
``e2e_request_latency_seconds``) carry ``model_name``. The same counters are shown as in
the vLLM dialect (so one state reads the same either way); where real SGLang differs, the
readers already cope: it counts tokens when a request finishes, creates tokenizer series
at their first observation (``cached_tokens_total`` at the first hit), and buckets its
histograms differently (readers use only ``_sum``/``_count``). ``cache_hit_rate`` here is
the lifetime ratio, not SGLang's last-prefill-batch value (readers do not use it).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from .histograms import HistogramSnapshot
from .stats import EngineStats

__all__ = ["render_metrics", "FINISH_REASONS", "METRIC_DIALECTS"]

METRIC_DIALECTS = ("vllm", "sglang")

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


def _histogram(
    name: str, help_text: str, snap: HistogramSnapshot, labels: list[str], names: list[str] = _LABELS
) -> HistogramMetricFamily:  # fmt: skip
    family = HistogramMetricFamily(name if ":" in name else f"vllm:{name}", help_text, labels=names)
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


_SGL_SCHEDULER = ["model_name", "engine_type", "tp_rank", "pp_rank"]
_SGL_TOKENIZER = ["model_name"]
_SGL_HISTOGRAMS = (
    ("time_to_first_token_seconds", "Histogram of time to first token in seconds."),
    ("inter_token_latency_seconds", "Histogram of inter-token latency in seconds."),
    ("e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds"),
)


class _SglangCollector(Collector):
    """The same snapshot under SGLang's names and label sets."""

    def __init__(self, stats: EngineStats, model_name: str, max_loras: int, block_size: int) -> None:
        self.stats, self.model_name, self.max_loras, self.block_size = stats, model_name, max_loras, block_size

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        sched, tok = [self.model_name, "unified", "0", "0"], [self.model_name]
        capacity = s.num_gpu_blocks * self.block_size
        gauges = [
            ("num_running_reqs", "The number of running requests.", s.num_running),
            ("num_queue_reqs", "The number of requests in the waiting queue.", s.num_waiting),
            ("token_usage", "The token usage.", s.kv_cache_usage),
            ("num_used_tokens", "The number of used tokens.", round(s.kv_cache_usage * capacity)),
            ("max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.", capacity),
            ("cache_hit_rate", "The prefix cache hit rate.", s.prefix_cache_hit_rate),
        ]
        if self.max_loras > 0:  # SGLang creates these only with --enable-lora
            gauges += [
                ("lora_pool_slots_used", "Number of LoRA adapter slots currently occupied in GPU memory.",
                 len(s.loaded_adapters)),
                ("lora_pool_slots_total", "Total number of LoRA adapter slots available (max_loras_per_batch).",
                 self.max_loras),
            ]  # fmt: skip
        for name, help_text, value in gauges:
            g = GaugeMetricFamily(f"sglang:{name}", help_text, labels=_SGL_SCHEDULER)
            g.add_metric(sched, float(value))
            yield g
        counters = (
            ("prompt_tokens", "Number of prefill tokens processed.", s.prompt_tokens),
            ("generation_tokens", "Number of generation tokens processed.", s.generation_tokens),
            ("cached_tokens", "Number of cached prompt tokens.", s.prefix_cache_hits),
            ("num_requests", "Number of requests processed.", s.request_success),
            ("num_aborted_requests", "Number of requests aborted.", s.num_aborted),
        )
        for name, help_text, value in counters:
            c = CounterMetricFamily(f"sglang:{name}", help_text, labels=_SGL_TOKENIZER)
            c.add_metric(tok, float(value))
            yield c
        for key, help_text in _SGL_HISTOGRAMS:
            snap = s.histograms.get(key)
            if snap is not None:
                yield _histogram(f"sglang:{key}", help_text, snap, tok, _SGL_TOKENIZER)


def render_metrics(
    stats: EngineStats, *, model_name: str, engine: str = "0", max_loras: int = 0, now_unix: float = 0.0,
    block_size: int = 16, enable_prefix_caching: bool = True, dialect: str = "vllm",
) -> bytes:  # fmt: skip
    """Prometheus text exposition (format 0.0.4) of one engine's snapshot, in ``dialect``."""
    registry = CollectorRegistry(auto_describe=False)
    if dialect == "sglang":
        registry.register(_SglangCollector(stats, model_name, max_loras, block_size))
    elif dialect == "vllm":
        registry.register(
            _StatsCollector(stats, model_name, engine, max_loras, now_unix, block_size, enable_prefix_caching)
        )
    else:
        raise ValueError(f"unknown metrics dialect {dialect!r}; expected one of: {', '.join(METRIC_DIALECTS)}")
    return generate_latest(registry)
