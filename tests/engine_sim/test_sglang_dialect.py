"""``--metrics-dialect sglang``: the same engine shown as SGLang: SGLang's metric names and
label sets on /metrics, SGLang's /v1/models and native info routes; the vLLM dialect keeps
vLLM's (no SGLang-only routes)."""

from __future__ import annotations

import json
import subprocess
import sys

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime_components.engine_sim.cluster import EngineCluster
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.server import EngineServer

from .helpers import with_cluster

SCHEDULER_LABELS = {"model_name", "engine_type", "tp_rank", "pp_rank"}


def test_sglang_pages_carry_sglangs_names_and_label_sets() -> None:
    async def body(cluster: EngineCluster, session: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        payload = {"model": "llama-3-8b", "prompt": "hello " * 50, "max_tokens": 5}
        async with session.post(url + "/v1/completions", json=payload) as resp:
            assert resp.status == 200
        async with session.get(url + "/metrics") as resp:
            text = await resp.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert not [n for n in families if n.startswith("vllm:")]
        for gauge in ("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage", "sglang:cache_hit_rate",
                      "sglang:lora_pool_slots_total"):  # fmt: skip
            assert families[gauge].type == "gauge" and set(families[gauge].samples[0].labels) == SCHEDULER_LABELS
        for counter in ("sglang:prompt_tokens", "sglang:generation_tokens", "sglang:cached_tokens"):
            assert families[counter].type == "counter" and set(families[counter].samples[0].labels) == {"model_name"}
        for histogram in ("sglang:time_to_first_token_seconds", "sglang:inter_token_latency_seconds",
                          "sglang:e2e_request_latency_seconds"):  # fmt: skip
            assert families[histogram].type == "histogram"
        values = {s.name: s.value for f in families.values() for s in f.samples}
        assert values["sglang:prompt_tokens_total"] == 51 and values["sglang:generation_tokens_total"] == 5
        assert values["sglang:time_to_first_token_seconds_count"] == 1 and values["sglang:num_requests_total"] == 1

    with_cluster(body, speedup=50.0, metrics_dialect="sglang")


def test_sglang_model_listing_and_native_routes() -> None:
    async def body(cluster: EngineCluster, session: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        assert cluster.endpoints()[0]["engine"] == "sglang"
        cluster.servers[0].core.load_adapter("sql")
        async with session.get(url + "/v1/models") as resp:
            data = (await resp.json())["data"]
        assert [(m["id"], m["owned_by"]) for m in data] == [("llama-3-8b", "sglang")]  # SGLang lists no adapters
        async with session.get(url + "/get_model_info") as resp:
            info = await resp.json()
        assert info["model_path"] == "llama-3-8b" and info["is_generation"] is True
        async with session.get(url + "/health_generate") as resp:
            assert resp.status == 200
        async with session.post(url + "/flush_cache") as resp:
            assert resp.status == 200

    with_cluster(body, metrics_dialect="sglang")


def test_the_vllm_dialect_has_no_sglang_routes() -> None:
    async def body(cluster: EngineCluster, session: aiohttp.ClientSession) -> None:
        async with session.get(cluster.endpoints()[0]["url"] + "/get_model_info") as resp:
            assert resp.status == 404

    with_cluster(body)


def test_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metrics dialect 'tgi'; expected one of: vllm, sglang"):
        EngineServer(EngineConfig(), metrics_dialect="tgi")


def test_the_cli_flag_prints_the_dialect_and_rejects_unknown_ones() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime_components.engine_sim.cli", "--metrics-dialect", "sglang", "--duration", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[-1].strip() == "READY" and json.loads(lines[0])["engine"] == "sglang"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # reaps it and closes both pipes
    bad = subprocess.run([sys.executable, "-m", "runtime_components.engine_sim.cli", "--metrics-dialect", "tgi"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "invalid choice: 'tgi'" in bad.stderr and "sglang" in bad.stderr
