"""Engine metric dialects: one table from each engine's Prometheus names to canonical values.

The gateway's scraper, the scaler and the optimizer read *canonical* metrics (running
requests, KV-cache usage, TTFT, ...). Each engine exposes them under its own names and
with its own semantics; this table says, per dialect, which series carry a canonical value,
how several series of one pod combine, and how a value the engine does not export as such
is derived. Readers (``runtime_components.common.engine_metrics``) apply it; nothing else
in the stack names an engine's metric.

Sources of the names
--------------------
- **vLLM 0.32** (dialect ``vllm``): ``vllm/v1/metrics/loggers.py`` and a recorded real scrape
  of vLLM 0.32 (``tests/contracts/vllm_0_32/metrics.txt``). Gauges and counters carry
  ``model_name`` and ``engine`` (one series per engine core with data parallelism).
- **SGLang** (dialect ``sglang``): the "Production Metrics" page,
  https://docs.sglang.io/references/production_metrics.html, and its source,
  ``python/sglang/srt/metrics/collector.py`` (sgl-project/sglang): ``SchedulerMetricsCollector``
  defines the scheduler gauges ``sglang:num_running_reqs``, ``sglang:num_queue_reqs``,
  ``sglang:token_usage``, ``sglang:cache_hit_rate`` and, with LoRA enabled,
  ``sglang:lora_pool_slots_total`` / ``_used``; their labels (set in
  ``python/sglang/srt/managers/scheduler_metrics_mixin.py``) are ``model_name``,
  ``engine_type``, ``tp_rank``, ``pp_rank`` and, with data parallelism, ``dp_rank``.
  ``TokenizerMetricsCollector`` defines the counters ``sglang:prompt_tokens_total``,
  ``sglang:generation_tokens_total``, ``sglang:cached_tokens_total``,
  ``sglang:num_requests_total`` and the histograms ``sglang:time_to_first_token_seconds``,
  ``sglang:inter_token_latency_seconds``, ``sglang:e2e_request_latency_seconds``, labelled
  ``model_name`` (newer releases add ``engine_type`` and operator-chosen custom labels).

Where the dialects differ
-------------------------
- **Prefix-cache hit ratio.** vLLM counts prefix-cache *queries* and *hits* in tokens
  (``vllm:prefix_cache_queries_total`` / ``_hits_total``); the canonical ratio over a scrape
  interval is delta hits / delta queries. SGLang's ``sglang:cache_hit_rate`` is a gauge of
  the *last prefill batch* only, and SGLang sets it to 0 whenever it logs a decode batch, so
  it reads 0 most of the time on a busy pod: it is not used. SGLang's counters stand in:
  every prompt token is looked up in the radix cache, so queries = ``sglang:prompt_tokens_total``
  and hits = ``sglang:cached_tokens_total``. SGLang creates ``cached_tokens_total`` on the
  first hit; while it is absent the ratio is **unknown** (None), never 0: a scorer that reads
  it treats the pod as unknown (neutral).
- **Time per output token.** Canonical ``inter_token_latency`` is the token-weighted mean
  gap between consecutive output tokens: delta ``_sum`` / delta ``_count`` of a per-token
  histogram. vLLM: ``vllm:inter_token_latency_seconds`` (one observation per token; older
  vLLM called it ``vllm:time_per_output_token_seconds``); ``vllm:request_time_per_output_token_seconds``
  (a per-request mean, request-weighted) is read only when neither exists. SGLang:
  ``sglang:inter_token_latency_seconds`` adds each output chunk's interval to ``_sum`` and
  its token count to the buckets, so sum/count is the same per-token mean.
- **KV-cache usage.** vLLM: fraction of KV blocks in use; SGLang: ``sglang:token_usage``,
  fraction of the KV token pool in use. Same ratio (0..1), different allocation unit.
  Several series (data-parallel ranks) are averaged, not summed.
- **Timing of counters.** vLLM counts prompt tokens when a request's first token is out and
  generation tokens per token; SGLang counts both when a request *finishes*, so on SGLang
  token throughput lags by one request lifetime. SGLang's scheduler gauges are refreshed
  when it logs a batch (every prefill batch, every ``decode_log_interval`` decode steps).
- **LoRA.** vLLM: ``vllm:lora_requests_info`` (labels ``max_lora``, ``running_lora_adapters``,
  ``waiting_lora_adapters``; value = time of its last update). SGLang: only the slot count
  ``sglang:lora_pool_slots_total`` (with ``--enable-lora``); which adapters run is not
  exported, and SGLang's ``/v1/models`` lists only the base model, so the gateway knows an
  SGLang pod's adapters from its configuration alone.
- **Progress (frozen-metric detection).** vLLM's ``*_total`` counters move with every token.
  SGLang's token counters move only when a request finishes, so the detector also watches
  SGLang's inter-token-latency histogram count, which moves as output chunks arrive.

Light: standard library only (the compiler imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CANONICAL",
    "DIALECTS",
    "ENGINES",
    "CanonicalMetric",
    "Dialect",
    "EngineName",
    "Series",
    "detect_engine",
    "combine_of",
    "dialect",
    "translate_name",
]

EngineName = Literal["vllm", "sglang"]
ENGINES: tuple[EngineName, ...] = ("vllm", "sglang")

Kind = Literal["gauge", "counter", "histogram", "info"]
Combine = Literal["sum", "mean"]


@dataclass(frozen=True)
class CanonicalMetric:
    """A value the gateway, scaler or optimizer reads, whatever the engine."""

    name: str
    kind: Kind
    unit: str
    meaning: str
    when_missing: str  #: what a reader does when a pod's dialect does not export it


@dataclass(frozen=True)
class Series:
    """Where one dialect keeps a canonical metric.

    ``names`` are tried in order; the first one present in a scrape is used (renamed metrics
    across engine versions). Samples of that name with different label sets (engine cores,
    data-parallel ranks, LoRA labels) combine by ``combine``. Histograms are named by their
    base name; readers use its ``_sum`` and ``_count``.
    """

    names: tuple[str, ...]
    combine: Combine = "sum"
    note: str = ""
    from_label: str = ""  #: the value is this label of the newest series, not the sample value


@dataclass(frozen=True)
class Dialect:
    """One engine's metric names, by canonical name (absent key: the engine lacks it)."""

    engine: EngineName
    prefix: str
    source: str
    series: dict[str, Series]
    progress_extra: tuple[str, ...] = ()  #: non-counter samples that move while work is done

    def names_of(self, canonical: str) -> tuple[str, ...]:
        """The dialect's names for ``canonical`` (empty when the engine does not export it)."""
        found = self.series.get(canonical)
        return found.names if found is not None else ()


_UNKNOWN = "unknown (None): routing scorers treat the pod as neutral, the scaler as not reporting; never 0"

#: Every canonical metric, by name.
CANONICAL: dict[str, CanonicalMetric] = {
    m.name: m
    for m in (
        CanonicalMetric("running_requests", "gauge", "requests", "requests in the running batch", _UNKNOWN),
        CanonicalMetric("waiting_requests", "gauge", "requests", "requests queued, not yet scheduled", _UNKNOWN),
        CanonicalMetric("kv_cache_usage", "gauge", "ratio 0..1", "fraction of the KV cache in use", _UNKNOWN),
        CanonicalMetric(
            "prefix_cache_queried_tokens", "counter", "tokens", "prompt tokens looked up in the prefix cache", _UNKNOWN
        ),
        CanonicalMetric(
            "prefix_cache_hit_tokens", "counter", "tokens", "prompt tokens found in the prefix cache",
            _UNKNOWN + " (hit ratio: delta hits / delta queries; unknown while either is absent)",
        ),  # fmt: skip
        CanonicalMetric("prompt_tokens", "counter", "tokens", "prompt tokens processed", _UNKNOWN),
        CanonicalMetric("generation_tokens", "counter", "tokens", "output tokens generated", _UNKNOWN),
        CanonicalMetric("time_to_first_token", "histogram", "seconds", "arrival to first output token", _UNKNOWN),
        CanonicalMetric(
            "inter_token_latency", "histogram", "seconds", "gap between consecutive output tokens (per token)", _UNKNOWN
        ),
        CanonicalMetric("e2e_request_latency", "histogram", "seconds", "arrival to last output token", _UNKNOWN),
        CanonicalMetric(
            "lora_slots", "gauge", "adapters", "adapters an engine can hold at once",
            "unknown (None): the pod is not a target for loading an adapter",
        ),  # fmt: skip
        CanonicalMetric(
            "lora_info", "info", "labels", "adapters running / waiting (labels of the newest series)",
            "no running adapters are learned from metrics; configured adapters still count",
        ),  # fmt: skip
    )
}

_VLLM = Dialect(
    engine="vllm",
    prefix="vllm:",
    source="vLLM 0.32: vllm/v1/metrics/loggers.py; recorded scrape tests/contracts/vllm_0_32/metrics.txt",
    series={
        "running_requests": Series(("vllm:num_requests_running",)),
        "waiting_requests": Series(("vllm:num_requests_waiting",)),
        "kv_cache_usage": Series(
            ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"), "mean", "gpu_cache_usage_perc before vLLM 0.10"
        ),
        "prefix_cache_queried_tokens": Series(("vllm:prefix_cache_queries_total",)),
        "prefix_cache_hit_tokens": Series(("vllm:prefix_cache_hits_total",)),
        "prompt_tokens": Series(("vllm:prompt_tokens_total",), note="counted at a request's first token"),
        "generation_tokens": Series(("vllm:generation_tokens_total",), note="counted per token"),
        "time_to_first_token": Series(("vllm:time_to_first_token_seconds",)),
        "inter_token_latency": Series(
            (
                "vllm:inter_token_latency_seconds",
                "vllm:time_per_output_token_seconds",
                "vllm:request_time_per_output_token_seconds",
            ),
            note="per token; the legacy name is the same histogram; the per-request mean is a last resort",
        ),
        "e2e_request_latency": Series(("vllm:e2e_request_latency_seconds",)),
        "lora_info": Series(("vllm:lora_requests_info",), note="labels max_lora, running/waiting_lora_adapters"),
        "lora_slots": Series(("vllm:lora_requests_info",), from_label="max_lora"),
    },
)

_SGLANG = Dialect(
    engine="sglang",
    prefix="sglang:",
    source=(
        "SGLang Production Metrics, https://docs.sglang.io/references/production_metrics.html; "
        "python/sglang/srt/metrics/collector.py"
    ),
    series={
        "running_requests": Series(("sglang:num_running_reqs",)),
        "waiting_requests": Series(("sglang:num_queue_reqs",)),
        "kv_cache_usage": Series(("sglang:token_usage",), "mean", "fraction of the KV token pool"),
        "prefix_cache_queried_tokens": Series(
            ("sglang:prompt_tokens_total",), note="every prompt token is looked up in the radix cache"
        ),
        "prefix_cache_hit_tokens": Series(
            ("sglang:cached_tokens_total",), note="created on the first hit; sglang:cache_hit_rate is a last-batch gauge"
        ),
        "prompt_tokens": Series(("sglang:prompt_tokens_total",), note="counted when a request finishes"),
        "generation_tokens": Series(("sglang:generation_tokens_total",), note="counted when a request finishes"),
        "time_to_first_token": Series(("sglang:time_to_first_token_seconds",)),
        "inter_token_latency": Series(("sglang:inter_token_latency_seconds",), note="sum/count is per token"),
        "e2e_request_latency": Series(("sglang:e2e_request_latency_seconds",)),
        "lora_slots": Series(("sglang:lora_pool_slots_total",), "mean", "only with --enable-lora"),
    },
    progress_extra=("sglang:inter_token_latency_seconds_count",),
)

#: The dialects, by engine name.
DIALECTS: dict[EngineName, Dialect] = {"vllm": _VLLM, "sglang": _SGLANG}


def dialect(engine: str) -> Dialect:
    """The dialect of ``engine``; a clear error for an engine the table does not know."""
    try:
        return DIALECTS[engine]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown engine metric dialect {engine!r}; expected one of: {', '.join(ENGINES)}") from None


def detect_engine(names: object) -> EngineName | None:
    """The dialect whose prefix the first engine sample name carries (``vllm:...``,
    ``sglang:...``), or None when no name has a known prefix. ``names``: any iterable of str."""
    for name in names:  # type: ignore[attr-defined]
        for engine, d in DIALECTS.items():
            if name.startswith(d.prefix):
                return engine
    return None


def translate_name(name: str, engine: str) -> tuple[str, ...]:
    """The names ``engine`` uses for the metric another dialect calls ``name``.

    ``vllm:num_requests_running`` -> ``("sglang:num_running_reqs",)`` for sglang; a
    histogram's ``_sum``/``_count``/``_bucket`` keep their suffix. A name of ``engine``'s own
    dialect, or one no dialect knows (a custom metric), comes back as is; a known metric
    ``engine`` does not export comes back empty (the reader then finds no sample and says so).
    """
    target = dialect(engine)
    if name.startswith(target.prefix):
        return (name,)
    for suffix in ("", "_sum", "_count", "_bucket"):
        if suffix and not name.endswith(suffix):
            continue
        base = name[: len(name) - len(suffix)] if suffix else name
        for d in DIALECTS.values():
            for canonical, series in d.series.items():
                kind = CANONICAL[canonical].kind
                if base not in series.names or series.from_label or kind == "info":
                    continue
                if suffix and kind != "histogram":
                    continue
                return tuple(n + suffix for n in target.names_of(canonical))
    known = any(name in series.names for d in DIALECTS.values() for series in d.series.values())
    return () if known else (name,)


def combine_of(name: str) -> Combine:
    """How the series of one pod named ``name`` combine (``mean`` for ratios such as KV-cache
    usage, where data-parallel ranks each report their own; ``sum`` otherwise)."""
    for d in DIALECTS.values():
        for series in d.series.values():
            if name in series.names:
                return series.combine
    return "sum"
