"""Cumulative engine counters and the ``EngineStats`` snapshot that mirrors vLLM's /metrics.

Where it sits: ``EngineCore`` updates an ``EngineCounters`` as requests are scheduled,
produce tokens and finish; ``EngineCore.stats()`` freezes it with the current gauges into
an ``EngineStats``. Routing callbacks in ``des`` read these snapshots, and ``metrics.py``
renders them with vLLM's metric names. Counter semantics follow vLLM v1:

- prefix-cache queries/hits are in *tokens*, counted when a waiting request is scheduled
  (again after a preemption); hits are whole blocks;
- ``prompt_tokens`` grows by a request's prompt length at its first token,
  ``generation_tokens`` by one per sampled token;
- TTFT = first token - arrival; inter-token latency between consecutive tokens; e2e =
  finish - arrival; queue = first scheduled - arrival; inference = finish - first
  scheduled; prefill = first token - first scheduled; decode = finish - first token;
  per-request TPOT = decode / (outputs - 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import SimRequest
from .histograms import (
    REQUEST_LATENCY_BUCKETS,
    TOKEN_LATENCY_BUCKETS,
    TTFT_BUCKETS,
    Histogram,
    HistogramSnapshot,
    one_two_five_buckets,
)

__all__ = ["EngineCounters", "EngineStats"]


@dataclass(frozen=True)
class EngineStats:
    """One engine's state and cumulative counters at one instant."""

    num_running: int
    num_waiting: int
    kv_cache_usage: float  #: 0..1, 1 = every block referenced
    num_gpu_blocks: int
    prefix_cache_queries: int  #: tokens
    prefix_cache_hits: int  #: tokens
    external_prefix_cache_queries: int
    external_prefix_cache_hits: int
    prompt_tokens: int
    generation_tokens: int
    num_preemptions: int
    request_success: int  #: finished requests (finished_reason "length")
    num_aborted: int
    num_steps: int
    loaded_adapters: tuple[str, ...]
    running_adapters: tuple[str, ...]
    waiting_adapters: tuple[str, ...]
    histograms: dict[str, HistogramSnapshot] = field(default_factory=dict)

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else 0.0


class EngineCounters:
    """Mutable counters and histograms owned by one ``EngineCore``."""

    def __init__(self, max_model_len: int) -> None:
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.external_queries = 0
        self.external_hits = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.success = 0
        self.aborted = 0
        self.steps = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.inter_token = Histogram(TOKEN_LATENCY_BUCKETS)
        self.request_tpot = Histogram(TOKEN_LATENCY_BUCKETS)
        self.e2e = Histogram(REQUEST_LATENCY_BUCKETS)
        self.queue_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.inference_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.prefill_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.decode_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.prompt_len = Histogram(one_two_five_buckets(max_model_len))
        self.output_len = Histogram(one_two_five_buckets(max_model_len))

    def record_finish(self, req: SimRequest, n_output: int, scheduled_s: float, first_s: float, end_s: float) -> None:
        self.success += 1
        self.e2e.observe(end_s - req.arrival_s)
        self.inference_time.observe(end_s - scheduled_s)
        self.prefill_time.observe(first_s - scheduled_s)
        self.decode_time.observe(end_s - first_s)
        if n_output > 1:
            self.request_tpot.observe((end_s - first_s) / (n_output - 1))
        self.prompt_len.observe(len(req.prompt_token_ids))
        self.output_len.observe(n_output)

    def snapshot(
        self,
        *,
        num_running: int,
        num_waiting: int,
        kv_cache_usage: float,
        num_gpu_blocks: int,
        loaded_adapters: tuple[str, ...],
        running_adapters: tuple[str, ...],
        waiting_adapters: tuple[str, ...],
    ) -> EngineStats:
        return EngineStats(
            num_running=num_running,
            num_waiting=num_waiting,
            kv_cache_usage=kv_cache_usage,
            num_gpu_blocks=num_gpu_blocks,
            prefix_cache_queries=self.prefix_queries,
            prefix_cache_hits=self.prefix_hits,
            external_prefix_cache_queries=self.external_queries,
            external_prefix_cache_hits=self.external_hits,
            prompt_tokens=self.prompt_tokens,
            generation_tokens=self.generation_tokens,
            num_preemptions=self.preemptions,
            request_success=self.success,
            num_aborted=self.aborted,
            num_steps=self.steps,
            loaded_adapters=loaded_adapters,
            running_adapters=running_adapters,
            waiting_adapters=waiting_adapters,
            histograms={
                "time_to_first_token_seconds": self.ttft.snapshot(),
                "inter_token_latency_seconds": self.inter_token.snapshot(),
                "request_time_per_output_token_seconds": self.request_tpot.snapshot(),
                "e2e_request_latency_seconds": self.e2e.snapshot(),
                "request_queue_time_seconds": self.queue_time.snapshot(),
                "request_inference_time_seconds": self.inference_time.snapshot(),
                "request_prefill_time_seconds": self.prefill_time.snapshot(),
                "request_decode_time_seconds": self.decode_time.snapshot(),
                "request_prompt_tokens": self.prompt_len.snapshot(),
                "request_generation_tokens": self.output_len.snapshot(),
            },
        )
