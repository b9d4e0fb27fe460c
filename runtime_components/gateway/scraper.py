"""Scrapes every endpoint's Prometheus ``/metrics`` (vLLM names) and ``/v1/models``.

Runs one asyncio task; each round fetches all endpoints concurrently and stores an
:class:`~.endpoints.EngineSample` with its time. Gauges are read as they are
(``vllm:num_requests_running``, ``..._waiting``, ``vllm:kv_cache_usage_perc``); recent
latencies come from histogram deltas between two scrapes:

    ttft_s = (sum_now - sum_before) / (count_now - count_before)   (None when no new requests)

and throughput from counter deltas: ``(prompt + generation tokens) delta / seconds``.
Adapters a pod holds are the ``/v1/models`` entries whose ``parent`` (or ``root``) is
another model (vLLM's runtime LoRA listing). A refused connection marks the endpoint down
(it leaves the candidate set); a timeout only lets its metrics age into staleness.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from .endpoints import EndpointTable, EngineSample

__all__ = ["MetricScraper", "parse_metrics_text", "sample_from_metrics"]

log = logging.getLogger(__name__)

_TTFT = ("vllm:time_to_first_token_seconds",)
_TPOT = ("vllm:time_per_output_token_seconds", "vllm:request_time_per_output_token_seconds", "vllm:inter_token_latency_seconds")
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def parse_metrics_text(text: str) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """Sum samples by name across label sets; also keep the labels of ``*_info`` samples.

    An ``*_info`` metric may carry several label sets: vLLM keeps one
    ``vllm:lora_requests_info`` series for every adapter set it has ever reported, valued
    with the time of its last update, in first-seen order. The newest (largest value) is
    the current one, whatever order the series are printed in.

    A tiny parser for the exposition format (name{labels} value): engines export a handful
    of lines, and this avoids building metric-family objects on every scrape.
    """
    values: dict[str, float] = {}
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
        values[name] = values.get(name, 0.0) + value
        if name.endswith("_info") and labels_text and value >= info_stamp.get(name, float("-inf")):
            info[name], info_stamp[name] = _parse_labels(labels_text), value
    return values, info


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


def _first(values: dict[str, float], names: tuple[str, ...], suffix: str = "") -> float | None:
    for name in names:
        if name + suffix in values:
            return values[name + suffix]
    return None


def _delta_mean(now: dict[str, float], before: dict[str, float] | None, names: tuple[str, ...]) -> float | None:
    if before is None:
        return None
    s1, c1 = _first(now, names, "_sum"), _first(now, names, "_count")
    s0, c0 = _first(before, names, "_sum"), _first(before, names, "_count")
    if None in (s1, c1, s0, c0) or c1 - c0 <= 0:  # type: ignore[operator]
        return None
    return (s1 - s0) / (c1 - c0)  # type: ignore[operator]


def sample_from_metrics(
    values: dict[str, float], info: dict[str, dict[str, str]], before: dict[str, float] | None,
    elapsed_s: float, adapters: frozenset[str],
) -> EngineSample:
    """Build an EngineSample from this scrape's values and the previous scrape's (for deltas)."""
    throughput = None
    if before is not None and elapsed_s > 0:
        tokens = ("vllm:prompt_tokens_total", "vllm:generation_tokens_total")
        if all(t in values and t in before for t in tokens):
            throughput = max(0.0, sum(values[t] - before[t] for t in tokens)) / elapsed_s
    lora = info.get("vllm:lora_requests_info", {})
    max_loras = int(lora["max_lora"]) if lora.get("max_lora", "").isdigit() else None
    running_adapters = frozenset(a for a in lora.get("running_lora_adapters", "").split(",") if a)
    return EngineSample(
        running=values.get("vllm:num_requests_running"),
        waiting=values.get("vllm:num_requests_waiting"),
        kv_cache_usage=_first(values, _KV),
        ttft_s=_delta_mean(values, before, _TTFT),
        tpot_s=_delta_mean(values, before, _TPOT),
        throughput_tps=throughput,
        max_loras=max_loras,
        adapters=adapters | running_adapters,
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
    values: dict[str, float]
    at: float


class MetricScraper:
    """Keeps the endpoint table's samples fresh."""

    def __init__(self, table: EndpointTable, interval_s: float, timeout_s: float,
                 on_down: Callable[[str, str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._table = table
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
        values, info = parse_metrics_text(text)
        previous = self._previous.get(address)
        sample = sample_from_metrics(
            values, info, previous.values if previous else None, now - previous.at if previous else 0.0, adapters
        )
        self._previous[address] = _Previous(values, now)
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
