"""Prefill and decode roles over HTTP: a prefill engine answers after one token with the
transfer's parameters, a decode engine takes the prompt's KV from them, and both still serve
whole requests without parameters (a router's fallback)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from runtime_components.engine_sim.cluster import EngineCluster
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.pd import PdRole, prefill_request_params

from .helpers import complete, scrape

PROMPT = "the schema of the sales database has many tables " * 100  # ~1200 tokens


def with_pair(body: Any, *, link_gbs: float = 25.0, speedup: float = 20.0) -> None:
    """One prefill and one decode engine (two clusters, as two processes would be)."""

    async def main() -> None:
        roles: list[PdRole] = ["prefill", "decode"]
        clusters = [EngineCluster([EngineConfig()], speedup=speedup, pd_role=r, pd_link_gbs=link_gbs) for r in roles]
        for cluster in clusters:
            await cluster.start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
                urls = [c.endpoints()[0]["url"] for c in clusters]
                await asyncio.wait_for(body(session, *urls), 30)
        finally:
            for cluster in clusters:
                await cluster.stop()

    asyncio.run(main())


def test_prefill_answers_one_token_with_transfer_params_and_decode_takes_the_kv() -> None:
    async def body(s: aiohttp.ClientSession, prefill: str, decode: str) -> None:
        p0, d0 = await scrape(s, prefill), await scrape(s, decode)
        status, first = await complete(s, prefill, PROMPT, 50, stream=True, kv_transfer_params=prefill_request_params())
        assert status == 200  # answered whole, not streamed: the router reads the parameters
        assert first["usage"]["completion_tokens"] == 1
        params = first["kv_transfer_params"]
        prompt_tokens = first["usage"]["prompt_tokens"]
        host_port = prefill.removeprefix("http://")
        assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
        assert f"{params['remote_host']}:{params['remote_port']}" == host_port
        assert params["aibrix_prompt_tokens"] == prompt_tokens
        assert len(params["remote_block_ids"]) == prompt_tokens // 16  # every full prompt block
        status, second = await complete(s, decode, PROMPT, 50, kv_transfer_params=params)
        assert status == 200 and second["usage"]["completion_tokens"] == 50
        assert "kv_transfer_params" not in second
        p1, d1 = await scrape(s, prefill), await scrape(s, decode)
        assert p1["vllm:generation_tokens_total"] - p0["vllm:generation_tokens_total"] == 1
        assert d1["vllm:generation_tokens_total"] - d0["vllm:generation_tokens_total"] == 50
        # vLLM counts what a KV connector supplied as external prefix-cache hits
        assert d1["vllm:external_prefix_cache_hits_total"] == prompt_tokens - 1
        assert d1["vllm:external_prefix_cache_queries_total"] == prompt_tokens
        assert d1["vllm:prefix_cache_hits_total"] == 0

    with_pair(body)


def test_without_params_both_roles_serve_whole_requests() -> None:
    async def body(s: aiohttp.ClientSession, prefill: str, decode: str) -> None:
        for url in (prefill, decode):
            status, answer = await complete(s, url, PROMPT, 7)
            assert status == 200 and answer["usage"]["completion_tokens"] == 7
            assert "kv_transfer_params" not in answer
        metrics = await scrape(s, decode)
        assert metrics["vllm:external_prefix_cache_hits_total"] == 0
        # parameters that name no remote prefill (a client's, or a prefill's to the wrong role) change nothing
        status, answer = await complete(s, decode, PROMPT, 3, kv_transfer_params={"aibrix_prompt_tokens": 99})
        assert status == 200 and answer["usage"]["completion_tokens"] == 3
        assert (await scrape(s, decode))["vllm:external_prefix_cache_hits_total"] == 0

    with_pair(body)


def test_the_transfer_does_not_block_other_requests() -> None:
    # a link so slow that one request's transfer takes ~50 simulated seconds
    async def body(s: aiohttp.ClientSession, prefill: str, decode: str) -> None:
        status, first = await complete(s, prefill, PROMPT, 5, kv_transfer_params=prefill_request_params())
        assert status == 200
        done: list[str] = []

        async def run(name: str, **extra: Any) -> None:
            status, _ = await complete(s, decode, "a short question" if name == "short" else PROMPT, 3, **extra)
            assert status == 200
            done.append(name)

        slow = asyncio.create_task(run("transferred", kv_transfer_params=first["kv_transfer_params"]))
        await asyncio.sleep(0.05)
        await run("short")
        await slow
        assert done == ["short", "transferred"]

    with_pair(body, link_gbs=0.003, speedup=100.0)
