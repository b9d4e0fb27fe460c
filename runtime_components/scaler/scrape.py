"""Reading the scaling metric: engine pods' Prometheus `/metrics`, or the optimizer's gauge.

Text is parsed with `prometheus_client`'s parser. A pod's value is the sum of the samples
named `metric.name` (or one of `metric.sumWith`) whose labels include every `labels` pair (one engine may expose
several series, e.g. one per `engine` index). The workload total is the sum over the pods that
answered; pods that fail or time out are left out and counted as not reporting.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from runtime_components.scaler.kube import PodEndpoint

__all__ = ["MetricReading", "parse_metric", "read_engine_pods", "read_optimizer"]


@dataclass(frozen=True)
class MetricReading:
    """One scrape round: the total and how many sources contributed to it."""

    total: float
    reporting: int
    errors: tuple[str, ...] = ()


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
) -> MetricReading:
    """Scrape every ready pod concurrently and sum the metric."""
    ready = [p for p in pods if p.ready]

    async def one(pod: PodEndpoint) -> float | str:
        url = f"http://{pod.ip}:{pod.port or default_port}{path}"
        try:
            value = parse_metric(await _fetch(session, url, timeout_s), names, labels)
        except (TimeoutError, aiohttp.ClientError, RuntimeError, ValueError) as error:
            return f"{pod.name}: {url}: {error or type(error).__name__}"
        if value is None:
            return f"{pod.name}: {url}: no sample named {'+'.join(names)} with labels {labels}"
        return value

    results = await asyncio.gather(*(one(p) for p in ready))
    values = [r for r in results if isinstance(r, float)]
    errors = tuple(r for r in results if isinstance(r, str))
    return MetricReading(total=sum(values), reporting=len(values), errors=errors)


async def read_optimizer(
    session: aiohttp.ClientSession, *, url: str, names: tuple[str, ...], labels: dict[str, str], timeout_s: float
) -> MetricReading:
    """Read the optimizer's total (e.g. aibrix_optimizer_desired_replicas{model, pool})."""
    try:
        value = parse_metric(await _fetch(session, url, timeout_s), names, labels)
    except (TimeoutError, aiohttp.ClientError, RuntimeError, ValueError) as error:
        return MetricReading(total=0.0, reporting=0, errors=(f"{url}: {error or type(error).__name__}",))
    if value is None:
        return MetricReading(total=0.0, reporting=0, errors=(f"{url}: no sample named {'+'.join(names)} with labels {labels}",))
    return MetricReading(total=value, reporting=1)
