"""Reading an engine's ``/metrics`` page as canonical values, whatever the engine.

The table of names and semantics is :mod:`aibrix_spec.engine_metrics`; this module applies
it. ``parse_exposition`` reduces the page (one pass, no metric-family objects: scrapes
are frequent and pages small), ``read_canonical`` picks each canonical value out in the
pod's dialect (configured, or detected from the names' prefix), and ``interval_values``
derives what needs two scrapes: recent latencies as histogram deltas,

    ttft_s = (sum_now - sum_before) / (count_now - count_before)   (None when no new requests)

throughput as a token-counter delta over the elapsed seconds, and the prefix-cache hit ratio
as delta hits / delta queries. Anything a dialect does not export is None (unknown),
never 0. The gateway's scraper uses all three; the scaler uses the table's name
translation with its own parser (it needs sample types and timestamps).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aibrix_spec.engine_metrics import DIALECTS, Dialect, EngineName, detect_engine

__all__ = ["CanonicalSnapshot", "Exposition", "IntervalValues", "interval_values", "parse_exposition", "read_canonical"]


@dataclass(frozen=True)
class Exposition:
    """One scrape, reduced: per sample name the sum over its series and how many series
    there were; the labels of the newest series of every ``*_info`` metric."""

    sums: dict[str, float] = field(default_factory=dict)
    series: dict[str, int] = field(default_factory=dict)
    info: dict[str, dict[str, str]] = field(default_factory=dict)

    def combined(self, names: Iterable[str], combine: str) -> float | None:
        """The first of ``names`` present, its series summed or averaged; None if none is."""
        for name in names:
            if name in self.sums:
                total = self.sums[name]
                return total / self.series[name] if combine == "mean" else total
        return None


def parse_exposition(text: str, labels: Mapping[str, str] | None = None) -> Exposition:
    """Parse Prometheus text (``name{labels} value [timestamp]``); with ``labels``, only
    samples carrying all those pairs count.

    An ``*_info`` metric may carry several label sets: vLLM keeps one
    ``vllm:lora_requests_info`` series for every adapter set it has ever reported, valued
    with the time of its last update, in first-seen order. The newest (largest value) is
    the current one, whatever order the series are printed in.
    """
    sums: dict[str, float] = {}
    series: dict[str, int] = {}
    info: dict[str, dict[str, str]] = {}
    info_stamp: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        if brace >= 0:
            close = line.rfind("}")
            name, labels_text, rest = line[:brace], line[brace + 1 : close], line[close + 1 :]
        else:
            name, _, rest = line.partition(" ")
            labels_text = ""
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        parsed: dict[str, str] | None = None
        if labels:
            parsed = _parse_labels(labels_text)
            if any(parsed.get(k) != v for k, v in labels.items()):
                continue
        sums[name] = sums.get(name, 0.0) + value
        series[name] = series.get(name, 0) + 1
        if name.endswith("_info") and labels_text and value >= info_stamp.get(name, float("-inf")):
            info[name], info_stamp[name] = parsed if parsed is not None else _parse_labels(labels_text), value
    return Exposition(sums, series, info)


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lstrip(",").strip()
        j, chars = eq + 2, []  # skip ="
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and j + 1 < len(text):
                j += 1
            chars.append(text[j])
            j += 1
        labels[key] = "".join(chars)
        i = j + 1
    return labels


Pair = tuple[float, float]  #: a histogram's (sum, count)


@dataclass(frozen=True)
class CanonicalSnapshot:
    """The canonical values of one scrape (None: the pod's dialect does not export it)."""

    engine: EngineName
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    prefix_queried: float | None = None
    prefix_hits: float | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    ttft: Pair | None = None
    itl: Pair | None = None
    e2e: Pair | None = None
    lora_slots: int | None = None
    lora_running: frozenset[str] = frozenset()


def _value(exp: Exposition, d: Dialect, canonical: str) -> float | None:
    series = d.series.get(canonical)
    return exp.combined(series.names, series.combine) if series is not None else None


def _histogram(exp: Exposition, d: Dialect, canonical: str) -> Pair | None:
    for name in d.names_of(canonical):
        if name + "_sum" in exp.sums and name + "_count" in exp.sums:
            return exp.sums[name + "_sum"], exp.sums[name + "_count"]
    return None


def _lora(exp: Exposition, d: Dialect) -> tuple[int | None, frozenset[str]]:
    running: frozenset[str] = frozenset()
    info = d.series.get("lora_info")
    if info is not None:
        labels = next((exp.info[n] for n in info.names if n in exp.info), {})
        running = frozenset(a for a in labels.get("running_lora_adapters", "").split(",") if a)
    slots = d.series.get("lora_slots")
    if slots is None:
        return None, running
    if slots.from_label:
        labels = next((exp.info[n] for n in slots.names if n in exp.info), {})
        text = labels.get(slots.from_label, "")
        return (int(text) if text.isdigit() else None), running
    value = exp.combined(slots.names, slots.combine)
    return (int(value) if value is not None else None), running


def read_canonical(exp: Exposition, engine: str | None = None) -> CanonicalSnapshot:
    """The canonical values of ``exp`` in ``engine``'s dialect; ``None`` detects the dialect
    from the sample names' prefix (vLLM when no name has a known prefix)."""
    name: EngineName = engine if engine is not None else (detect_engine(exp.sums) or "vllm")  # type: ignore[assignment]
    d = DIALECTS[name]
    slots, running = _lora(exp, d)
    return CanonicalSnapshot(
        engine=name,
        running=_value(exp, d, "running_requests"),
        waiting=_value(exp, d, "waiting_requests"),
        kv_cache_usage=_value(exp, d, "kv_cache_usage"),
        prefix_queried=_value(exp, d, "prefix_cache_queried_tokens"),
        prefix_hits=_value(exp, d, "prefix_cache_hit_tokens"),
        prompt_tokens=_value(exp, d, "prompt_tokens"),
        generation_tokens=_value(exp, d, "generation_tokens"),
        ttft=_histogram(exp, d, "time_to_first_token"),
        itl=_histogram(exp, d, "inter_token_latency"),
        e2e=_histogram(exp, d, "e2e_request_latency"),
        lora_slots=slots,
        lora_running=running,
    )


@dataclass(frozen=True)
class IntervalValues:
    """What happened between two scrapes of one pod (None: unknown)."""

    ttft_s: float | None = None
    itl_s: float | None = None
    e2e_s: float | None = None
    throughput_tps: float | None = None
    prefix_hit_ratio: float | None = None


def _delta_mean(now: Pair | None, before: Pair | None) -> float | None:
    if now is None or before is None or now[1] - before[1] <= 0:
        return None
    return (now[0] - before[0]) / (now[1] - before[1])


def _delta(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else now - before


def interval_values(now: CanonicalSnapshot, before: CanonicalSnapshot | None, elapsed_s: float) -> IntervalValues:
    """Recent latencies, throughput and prefix hit ratio from two snapshots of one pod.

    A pod whose dialect changed between the scrapes (it was replaced) has no interval."""
    if before is None or before.engine != now.engine:
        return IntervalValues()
    throughput = None
    prompt, generation = _delta(now.prompt_tokens, before.prompt_tokens), _delta(now.generation_tokens, before.generation_tokens)
    if prompt is not None and generation is not None and elapsed_s > 0:
        throughput = max(0.0, prompt + generation) / elapsed_s
    ratio = None
    queried, hits = _delta(now.prefix_queried, before.prefix_queried), _delta(now.prefix_hits, before.prefix_hits)
    if queried is not None and hits is not None and queried > 0:
        ratio = min(1.0, max(0.0, hits / queried))
    return IntervalValues(
        ttft_s=_delta_mean(now.ttft, before.ttft),
        itl_s=_delta_mean(now.itl, before.itl),
        e2e_s=_delta_mean(now.e2e, before.e2e),
        throughput_tps=throughput,
        prefix_hit_ratio=ratio,
    )
