"""Scrapes every endpoint's Prometheus ``/metrics`` and ``/v1/models``, in its engine's dialect.

Runs one asyncio task; each round fetches all endpoints concurrently and stores an
:class:`~.endpoints.EngineSample` with its time. The page is read through the engine metric
table (``aibrix_spec.engine_metrics``, applied by ``runtime_components.common.engine_metrics``)
in the dialect of the endpoint's model (``models[].engine``: vllm or sglang; when absent,
detected from the names' prefix). Gauges are read as they are (running, waiting, KV-cache
usage); recent latencies come from histogram deltas between two scrapes:

    ttft_s = (sum_now - sum_before) / (count_now - count_before)   (None when no new requests)

throughput from counter deltas, ``(prompt + generation tokens) delta / seconds``, and the
prefix-cache hit ratio from delta hits / delta queries (None where the dialect lacks them).
Adapters a pod holds are the ``/v1/models`` entries whose ``parent`` is another model (vLLM's
runtime LoRA listing) and the running adapters of ``vllm:lora_requests_info``; SGLang exports
neither, so its pods hold their configured adapters. A refused connection marks the endpoint
down (it leaves the candidate set); a timeout only lets its metrics age into staleness.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from runtime_components.common.engine_metrics import (
    CanonicalSnapshot,
    Exposition,
    interval_values,
    parse_exposition,
    read_canonical,
)

from .endpoints import EndpointTable, EngineSample

__all__ = ["MetricScraper", "adapters_from_models", "parse_exposition", "sample_from_metrics"]

log = logging.getLogger(__name__)


def sample_from_metrics(
    now: Exposition, before: Exposition | CanonicalSnapshot | None, elapsed_s: float, adapters: frozenset[str],
    engine: str | None = None,
) -> EngineSample:
    """Build an EngineSample from this scrape and the previous one (for deltas), read in
    ``engine``'s dialect (None: detected)."""
    canonical = read_canonical(now, engine)
    previous = read_canonical(before, canonical.engine) if isinstance(before, Exposition) else before
    return _sample(canonical, previous, elapsed_s, adapters)


def _sample(
    canonical: CanonicalSnapshot, previous: CanonicalSnapshot | None, elapsed_s: float, adapters: frozenset[str]
) -> EngineSample:
    recent = interval_values(canonical, previous, elapsed_s)
    return EngineSample(
        running=canonical.running,
        waiting=canonical.waiting,
        kv_cache_usage=canonical.kv_cache_usage,
        ttft_s=recent.ttft_s,
        tpot_s=recent.itl_s,
        throughput_tps=recent.throughput_tps,
        prefix_hit_ratio=recent.prefix_hit_ratio,
        max_loras=canonical.lora_slots,
        adapters=adapters | canonical.lora_running,
        engine=canonical.engine,
    )


def adapters_from_models(payload: object) -> frozenset[str]:
    """Adapter ids in an OpenAI /v1/models answer: entries whose parent/root is another model."""
    names: set[str] = set()
    data = payload.get("data") if isinstance(payload, dict) else None
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        parent = item.get("parent")
        if isinstance(parent, str) and parent and parent != item["id"]:
            names.add(item["id"])
    return frozenset(names)


@dataclass
class _Previous:
    canonical: CanonicalSnapshot
    at: float


class MetricScraper:
    """Keeps the endpoint table's samples fresh."""

    def __init__(self, table: EndpointTable, interval_s: float, timeout_s: float,
                 on_down: Callable[[str, str], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 engines: Mapping[str, str | None] | None = None) -> None:
        self._table = table
        self._engines = dict(engines or {})  # model -> metric dialect (None or absent: detect)
        self._interval_s = interval_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._previous: dict[str, _Previous] = {}
        self._on_down = on_down
        self._session: aiohttp.ClientSession | None = None
        self.rounds = 0

    async def scrape_once(self) -> None:
        """Scrape every endpoint once, concurrently."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        addresses = self._table.addresses()
        await asyncio.gather(*(self._scrape(a) for a in addresses))
        for gone in set(self._previous) - set(addresses):
            del self._previous[gone]
        self.rounds += 1

    async def _scrape(self, address: str) -> None:
        assert self._session is not None
        try:
            async with self._session.get(f"http://{address}/metrics") as resp:
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                text = await resp.text()
            adapters: frozenset[str] = frozenset()
            async with self._session.get(f"http://{address}/v1/models") as resp:
                if resp.status == 200:
                    adapters = adapters_from_models(await resp.json(content_type=None))
        except TimeoutError:
            return  # slow, not dead: the sample simply ages
        except (aiohttp.ClientConnectionError, aiohttp.ClientResponseError, OSError) as exc:
            reason = f"scrape failed: {exc.__class__.__name__}"
            self._table.mark_down(address, reason)
            if self._on_down is not None:
                self._on_down(address, reason)
            return
        except ValueError:
            adapters = frozenset()  # a bad /v1/models body; the metrics are still good
        now = self._clock()
        endpoint = self._table.endpoint(address)
        engine = self._engines.get(endpoint.model) if endpoint is not None else None
        exposition = parse_exposition(text)
        canonical = read_canonical(exposition, engine)
        previous = self._previous.get(address)
        sample = _sample(
            canonical, previous.canonical if previous else None, now - previous.at if previous else 0.0, adapters
        )
        self._previous[address] = _Previous(canonical, now)
        self._table.record_sample(address, sample, now)

    async def run(self, stop: asyncio.Event) -> None:
        """Scrape every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.scrape_once()
            except Exception:  # one bad round must not end scraping
                log.exception("metric scrape round failed")
            try:
                await asyncio.wait_for(stop.wait(), self._interval_s)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
