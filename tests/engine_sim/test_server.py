"""The HTTP engine: OpenAI shapes, /metrics contract and movement, prefix cache, KV queueing,
LoRA adapters. Latencies compared here are simulated seconds read from /metrics."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from runtime_components.engine_sim.cluster import EngineCluster
from runtime_components.engine_sim.config import EngineConfig
from tests.contracts.families import contract_diff, families, recorded_families

from .helpers import complete, scrape, with_cluster


def test_metrics_follow_the_recorded_vllm_contract() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        await complete(s, url, "hello there", 3)
        async with s.get(url + "/metrics") as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        assert contract_diff(families(text), recorded_families()) == []

    with_cluster(body)


def test_metrics_move_as_requests_complete() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        before = await scrape(s, url)
        statuses = await asyncio.gather(*(complete(s, url, f"request number {i} " * 20, 5) for i in range(4)))
        assert [st for st, _ in statuses] == [200] * 4
        after = await scrape(s, url)
        assert after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] == 20
        assert after["vllm:request_success_total{finished_reason=length}"] == 4
        assert after["vllm:time_to_first_token_seconds_count"] == 4
        assert after["vllm:inter_token_latency_seconds_count"] == 16
        assert after["vllm:e2e_request_latency_seconds_count"] == 4
        assert after["vllm:prompt_tokens_total"] == sum(b["usage"]["prompt_tokens"] for _, b in statuses)
        assert after["vllm:num_requests_running"] == 0 and after["vllm:kv_cache_usage_perc"] == 0

    with_cluster(body, speedup=5.0)


def test_a_repeated_prefix_lowers_ttft_and_raises_the_hit_counter() -> None:
    shared = "the schema of the sales database has many tables " * 200  # ~2000 tokens

    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        status, cold = await complete(s, url, shared + "first question", 2)
        m1 = await scrape(s, url)
        status2, warm = await complete(s, url, shared + "second question", 2)
        m2 = await scrape(s, url)
        assert (status, status2) == (200, 200)
        cold_ttft = m1["vllm:time_to_first_token_seconds_sum"]
        warm_ttft = m2["vllm:time_to_first_token_seconds_sum"] - cold_ttft
        assert warm_ttft < cold_ttft / 2
        assert m2["vllm:prefix_cache_hits_total"] - m1["vllm:prefix_cache_hits_total"] >= 1900
        assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] >= 1900
        assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0

    with_cluster(body, [EngineConfig(accelerator="nvidia-a10")])


def test_a_full_kv_cache_makes_requests_wait() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        prompts = [[(i * 1000 + j) % 32000 for j in range(300)] for i in range(3)]
        tasks = [asyncio.create_task(complete(s, url, p, 60)) for p in prompts]
        seen_waiting = 0.0
        for _ in range(200):  # bounded poll, about 2 s
            m = await scrape(s, url)
            seen_waiting = max(seen_waiting, m["vllm:num_requests_waiting"])
            if seen_waiting and m["vllm:kv_cache_usage_perc"] > 0.8:
                break
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*tasks)
        assert seen_waiting >= 1
        assert [st for st, _ in results] == [200] * 3

    with_cluster(body, [EngineConfig(num_gpu_blocks=40)])


def test_lora_adapters_load_unload_and_respect_the_limit() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]

        async def post(path: str, payload: dict[str, str]) -> tuple[int, str]:
            async with s.post(url + path, json=payload) as resp:
                return resp.status, await resp.text()

        assert (await post("/v1/load_lora_adapter", {"lora_name": "sql", "lora_path": "/m/sql"}))[0] == 200
        assert (await post("/v1/load_lora_adapter", {"lora_name": "chat", "lora_path": "/m/chat"}))[0] == 200
        status, text = await post("/v1/load_lora_adapter", {"lora_name": "code", "lora_path": "/m/code"})
        assert status == 400 and "max_loras=2" in text
        status, text = await post("/v1/load_lora_adapter", {"lora_name": "sql", "lora_path": "/m/sql"})
        assert status == 400 and "already been loaded" in text
        status, text = await post("/v1/load_lora_adapter", {"lora_name": "x"})
        assert status == 400 and "lora_path" in text
        async with s.get(url + "/v1/models") as resp:
            models = {(m["id"], m["parent"]) for m in (await resp.json())["data"]}
        assert models == {("llama-3-8b", None), ("sql", "llama-3-8b"), ("chat", "llama-3-8b")}
        status, answer = await complete(s, url, "select the rows", 3, model="sql")
        assert status == 200 and answer["model"] == "sql"
        assert (await post("/v1/unload_lora_adapter", {"lora_name": "chat"}))[0] == 200
        status, text = await post("/v1/unload_lora_adapter", {"lora_name": "chat"})
        assert status == 404 and "cannot be found" in text
        status, answer = await complete(s, url, "hi", 3, model="chat")
        assert status == 404 and answer["error"]["message"] == "The model `chat` does not exist. Valid aliases: llama-3-8b, sql."
        assert (await post("/v1/load_lora_adapter", {"lora_name": "code", "lora_path": "/m/code"}))[0] == 200

    with_cluster(body, [EngineConfig(max_loras=2, lora_load_s=0.05)])


def test_streaming_chat_ends_with_usage_and_done() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        payload = {
            "model": "llama-3-8b", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 3,
            "stream": True, "stream_options": {"include_usage": True},
        }  # fmt: skip
        async with s.post(url + "/v1/chat/completions", json=payload) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            raw = (await resp.read()).decode()
        events = [line[6:] for line in raw.split("\n\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "length"]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[3]["choices"] == [] and chunks[3]["usage"]["completion_tokens"] == 3
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}

    with_cluster(body, speedup=5.0)


@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        ("/v1/completions", {"prompt": "x"}, 400, "model is required"),
        ("/v1/completions", {"model": "llama-3-8b", "prompt": "x", "max_tokens": 0}, 400, "max_tokens must be a positive"),
        ("/v1/completions", {"model": "llama-3-8b", "prompt": "x" * 50000, "max_tokens": 10}, 400, "maximum context length"),
        ("/v1/completions", {"model": "llama-3-8b", "prompt": ["a", "b"]}, 400, "batched prompts are not simulated"),
        ("/v1/chat/completions", {"model": "llama-3-8b", "messages": []}, 400, "messages must be a non-empty list"),
        ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "The model `gpt-4` does not exist"),
        # as vLLM: a priority needs --scheduling-policy priority
        ("/v1/completions", {"model": "llama-3-8b", "prompt": "x", "priority": 3}, 400, "priority scheduling is not enabled"),
        ("/v1/completions", {"model": "llama-3-8b", "prompt": "x", "priority": "high"}, 400, "priority must be an integer"),
    ],
)
def test_bad_requests_get_openai_errors(path: str, payload: dict[str, object], status: int, message: str) -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        async with s.post(cluster.endpoints()[0]["url"] + path, json=payload) as resp:
            answer = await resp.json()
        assert resp.status == status
        assert answer["error"]["code"] == status and message in answer["error"]["message"]

    with_cluster(body)


def test_many_engines_share_one_loop_on_distinct_ports() -> None:
    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        endpoints = cluster.endpoints()
        assert len({e["port"] for e in endpoints}) == 8
        results = await asyncio.gather(*(complete(s, e["url"], "hello", 2) for e in endpoints))
        assert [st for st, _ in results] == [200] * 8

    with_cluster(body, [EngineConfig()] * 8, speedup=5.0)
