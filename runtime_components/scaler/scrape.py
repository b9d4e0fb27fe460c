"""Reading the scaling metric: engine pods' Prometheus `/metrics`, or the optimizer's gauge.

Text is parsed with `prometheus_client`'s parser. Engine pages are read in the pod's metric
dialect (`metric.engine.engine`: vllm or sglang; absent: detected from the page's name
prefix): each configured name (`vllm:num_requests_running`, ...) is translated through the
engine metric table (`aibrix_spec.engine_metrics.translate_name`), so the same config scales
vLLM and SGLang pods (`sglang:num_running_reqs`). A pod's value is, for each name, the
samples whose labels include every `labels` pair combined as the table says (summed; averaged
for ratios such as KV-cache usage, where data-parallel ranks each report one), then summed
over `metric.name` and `metric.sumWith`. The workload total is the sum over the pods that
answered; pods that fail, time out or are frozen (`freshness`) are left out and counted as not
reporting, next to how many pods should have reported, so the autoscaler can treat them as
Kubernetes' HPA does rather than as idle.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from aibrix_spec.engine_metrics import DIALECTS, combine_of, detect_engine, translate_name
from runtime_components.scaler.freshness import FrozenDetector, PodSample
from runtime_components.scaler.kube import PodEndpoint

__all__ = ["MetricReading", "parse_metric", "parse_pod_sample", "read_engine_pods", "read_optimizer"]


@dataclass(frozen=True)
class MetricReading:
    """One scrape round: the total, how many sources contributed to it, and how many should have."""

    total: float
    reporting: int
    errors: tuple[str, ...] = ()
    expected: int | None = None  # ready pods (engine source); None: one source, nothing to fill in


def parse_metric(text: str, names: tuple[str, ...], labels: dict[str, str]) -> float | None:
    """Sum of the samples in Prometheus text `text` named one of `names` and carrying all
    `labels`; None when no sample matches."""
    found = False
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in names:
                continue
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                total += float(sample.value)
                found = True
    return total if found else None


def parse_pod_sample(
    text: str, names: tuple[str, ...], labels: dict[str, str], engine: str | None = None
) -> PodSample | None:
    """The metric's value in the pod's dialect (``engine``; None: detected), plus the progress
    signals `freshness` watches: the dialect's counters (every ``vllm:*_total``, or
    ``sglang:*_total`` and SGLang's inter-token-latency count, which moves while requests run)
    and the newest sample timestamp. None when no configured name has a sample."""
    families = list(text_string_to_metric_families(text))
    if engine is None:
        engine = detect_engine(s.name for f in families for s in f.samples)
    if engine is not None:
        wanted = [translate_name(n, engine) for n in names]
        namespace, extra = DIALECTS[engine].prefix, set(DIALECTS[engine].progress_extra)  # type: ignore[index]
    else:  # a page of no known engine: the names as given, their own namespace
        wanted = [(n,) for n in names]
        namespace, extra = (names[0].split(":", 1)[0] + ":" if ":" in names[0] else ""), set()
    by_name: dict[str, list[float]] = {}
    progress: list[float] = []
    newest: float | None = None
    for family in families:
        counter = family.type == "counter" and family.name.startswith(namespace)
        for sample in family.samples:
            if sample.timestamp is not None:
                stamp = float(sample.timestamp)
                newest = stamp if newest is None else max(newest, stamp)
            if (counter and sample.name.endswith("_total")) or sample.name in extra:
                progress.append(float(sample.value))
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                by_name.setdefault(sample.name, []).append(float(sample.value))
    total, found = 0.0, False
    for alternatives in wanted:  # the first of a metric's names the page carries
        name = next((n for n in alternatives if n in by_name), None)
        if name is None:
            continue
        values = by_name[name]
        total += sum(values) / len(values) if combine_of(name) == "mean" else sum(values)
        found = True
    return PodSample(total, tuple(progress), newest) if found else None


def _why(error: Exception, timeout_s: float) -> str:
    """A scrape failure in words (a timeout's own message is empty)."""
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return str(error) or type(error).__name__


async def _fetch(session: aiohttp.ClientSession, url: str, timeout_s: float) -> str:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return await response.text()


async def read_engine_pods(
    session: aiohttp.ClientSession,
    pods: list[PodEndpoint],
    *,
    names: tuple[str, ...],
    labels: dict[str, str],
    default_port: int,
    path: str,
    timeout_s: float,
    frozen: FrozenDetector | None = None,
    now: float = 0.0,
    engine: str | None = None,
) -> MetricReading:
    """Scrape every ready pod concurrently and sum the metric (frozen pods left out)."""
    ready = [p for p in pods if p.ready]

    async def one(pod: PodEndpoint) -> PodSample | str:
        url = f"http://{pod.ip}:{pod.port or default_port}{path}"
        try:
            sample = parse_pod_sample(await _fetch(session, url, timeout_s), names, labels, engine)
        except (TimeoutError, aiohttp.ClientError, RuntimeError, ValueError) as error:
            return f"{pod.name}: {url}: {_why(error, timeout_s)}"
        if sample is None:
            dialect = f" ({engine} dialect)" if engine else ""
            return f"{pod.name}: {url}: no sample named {'+'.join(names)}{dialect} with labels {labels}"
        why = frozen.check(pod.name, now, sample) if frozen is not None else None
        return f"{pod.name}: {url}: {why}" if why else sample

    results = await asyncio.gather(*(one(p) for p in ready))
    if frozen is not None:
        frozen.forget_except({p.name for p in ready})
    values = [r.value for r in results if isinstance(r, PodSample)]
    errors = tuple(r for r in results if isinstance(r, str))
    return MetricReading(total=sum(values), reporting=len(values), errors=errors, expected=len(ready))


async def read_optimizer(
    session: aiohttp.ClientSession, *, url: str, names: tuple[str, ...], labels: dict[str, str], timeout_s: float
) -> MetricReading:
    """Read the optimizer's total (e.g. aibrix_optimizer_desired_replicas{model, pool})."""
    try:
        value = parse_metric(await _fetch(session, url, timeout_s), names, labels)
    except (TimeoutError, aiohttp.ClientError, RuntimeError, ValueError) as error:
        return MetricReading(total=0.0, reporting=0, errors=(f"{url}: {_why(error, timeout_s)}",))
    if value is None:
        return MetricReading(total=0.0, reporting=0, errors=(f"{url}: no sample named {'+'.join(names)} with labels {labels}",))
    return MetricReading(total=value, reporting=1)
