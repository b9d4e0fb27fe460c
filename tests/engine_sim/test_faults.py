"""Each injected fault behaves as named: slowdown, error rate, hang, crash, stale/missing metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import aiohttp
import pytest

from runtime_components.engine_sim.cluster import EngineCluster
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.faults import Faults, parse_fault_spec

from .helpers import complete, scrape, with_cluster


async def _set(s: aiohttp.ClientSession, url: str, **changes: object) -> dict[str, object]:
    async with s.post(url + "/admin/faults", json=changes) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def test_slowdown_multiplies_simulated_latency() -> None:
    prompt = "a long prompt for the slow engine " * 150

    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        fast, slow = (e["url"] for e in cluster.endpoints())
        for url in (fast, slow):
            assert (await complete(s, url, prompt, 3))[0] == 200
        f, w = await scrape(s, fast), await scrape(s, slow)
        ratio = w["vllm:e2e_request_latency_seconds_sum"] / f["vllm:e2e_request_latency_seconds_sum"]
        assert ratio > 2.5

    with_cluster(body, [EngineConfig(accelerator="nvidia-a10")] * 2, faults={1: Faults(slowdown=4.0)})


def test_error_rate_answers_500_and_can_be_cleared() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        await _set(s, url, error_rate=1.0)
        results = [await complete(s, url, "hi", 2) for _ in range(5)]
        assert {st for st, _ in results} == {500}
        assert "injected fault" in results[0][1]["error"]["message"]
        await _set(s, url, error_rate=0.0)
        assert (await complete(s, url, "hi", 2))[0] == 200

    with_cluster(body)


def test_partial_error_rate_is_seeded_and_partial() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        statuses = [(await complete(s, url, "hi", 1))[0] for _ in range(40)]
        assert 5 <= statuses.count(500) <= 35 and statuses.count(200) + statuses.count(500) == 40

    with_cluster(body, faults={0: Faults(error_rate=0.5)}, speedup=10.0)


def test_hang_holds_requests_until_cleared() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        await _set(s, url, hang=True)
        with pytest.raises(asyncio.TimeoutError):
            async with s.get(url + "/health", timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
        pending = asyncio.create_task(complete(s, url, "held request", 2))
        await asyncio.sleep(0.1)
        assert not pending.done()
        await _set(s, url, hang=False)
        assert (await pending)[0] == 200

    with_cluster(body)


def test_crash_refuses_connections_until_restarted() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        assert (await _set(s, url, crash=True))["crash"] is True
        for _ in range(50):  # bounded: the crash lands within a few loop turns
            if cluster.servers[0].crashed:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(aiohttp.ClientConnectionError):
            await complete(s, url, "anyone there?", 2)
        endpoint = await cluster.restart(0)
        assert endpoint["url"] == url
        assert (await complete(s, url, "back again", 2))[0] == 200

    with_cluster(body)


async def _outcome(request: Awaitable[tuple[int, Any]]) -> str:
    """The HTTP status a request got, or ``dropped`` when its connection was cut."""
    try:
        return str((await request)[0])
    except aiohttp.ClientError:
        return "dropped"


async def _get_status(s: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with s.get(url) as resp:
        return resp.status, None


def test_crash_drops_in_flight_requests_without_an_answer() -> None:
    """A crash under running, streaming and hang-held requests cuts them all; none gets a 500."""

    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        running = [asyncio.create_task(_outcome(complete(s, url, "long answer", 400, stream=i % 2 == 1)))
                   for i in range(4)]  # fmt: skip
        for _ in range(100):  # bounded: wait until all four are inside the engine
            if cluster.servers[0].core.has_work() and len(cluster.servers[0]._streams) == 4:
                break
            await asyncio.sleep(0.01)
        await _set(s, url, hang=True)
        held = [asyncio.create_task(_outcome(_get_status(s, url + "/health"))) for _ in range(2)]
        await asyncio.sleep(0.05)
        await _set(s, url, crash=True)
        assert await asyncio.gather(*running, *held) == ["dropped"] * 6

    with_cluster(body)


def test_stale_metrics_freeze_and_missing_metrics_404() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        await _set(s, url, metrics="stale")
        frozen = await scrape(s, url)
        await complete(s, url, "more tokens please", 5)
        assert (await scrape(s, url))["vllm:generation_tokens_total"] == frozen["vllm:generation_tokens_total"]
        await _set(s, url, metrics="missing")
        async with s.get(url + "/metrics") as resp:
            assert resp.status == 404
        await _set(s, url, metrics="ok")
        assert (await scrape(s, url))["vllm:generation_tokens_total"] == frozen["vllm:generation_tokens_total"] + 5

    with_cluster(body, speedup=5.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"slowdown": 0.5}, "slowdown must be >= 1"),
        ({"error_rate": 2}, "error_rate must be in [0, 1]"),
        ({"metrics": "late"}, "metrics must be one of ok, stale, missing"),
        ({"hang": "yes"}, "fault hang must be true or false"),
        ({"explode": True}, "unknown fault(s) explode; expected: slowdown, error_rate, hang, crash, metrics"),
    ],
)
def test_bad_fault_settings_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Faults().updated(changes)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0:slowdown=3", (0, {"slowdown": 3.0})),
        ("4:hang=true,metrics=missing", (4, {"hang": True, "metrics": "missing"})),
    ],
)
def test_fault_specs_parse(spec: str, expected: tuple[int, dict[str, object]]) -> None:
    assert parse_fault_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("slowdown=3", "expected INDEX:key=value"), ("1:slowdown", "'slowdown' is not key=value"), ("1:error_rate=7", "error_rate must be in")],
)
def test_bad_fault_specs_explain(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_fault_spec(spec)
    assert message in str(info.value)
