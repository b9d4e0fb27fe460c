"""Shared test helpers: run an async test body against an in-process engine cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from runtime_components.engine_sim.cluster import EngineCluster
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.faults import Faults

Body = Callable[[EngineCluster, aiohttp.ClientSession], Awaitable[None]]


def with_cluster(
    body: Body,
    configs: Sequence[EngineConfig] = (EngineConfig(),),
    *,
    speedup: float = 1.0,
    faults: dict[int, Faults] | None = None,
    timeout_s: float = 30.0,
    metrics_dialect: str = "vllm",
) -> None:
    async def main() -> None:
        cluster = EngineCluster(configs, speedup=speedup, faults=faults, metrics_dialect=metrics_dialect)
        await cluster.start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await asyncio.wait_for(body(cluster, session), timeout_s)
        finally:
            await cluster.stop()

    asyncio.run(main())


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """``/metrics`` parsed into {sample name + sorted labels: value} (prometheus_client's parser)."""
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200, resp.status
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in ("engine", "model_name"))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


async def complete(
    session: aiohttp.ClientSession, url: str, prompt: str | list[int], max_tokens: int = 4, model: str = "llama-3-8b",
    **extra: Any,
) -> tuple[int, Any]:  # fmt: skip
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, **extra}
    async with session.post(url + "/v1/completions", json=body) as resp:
        return resp.status, await resp.json()
