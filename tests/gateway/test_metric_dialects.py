"""The gateway's scraper and the scaler read live simulated engines the same in both metric
dialects: one engine state, served over HTTP as vLLM's /metrics and as SGLang's, gives the
same canonical values; and one seeded trace gives the same routing picks and scaling decisions
(benchmarks.metric_dialects, on a short trace).

To read *one* state twice, the engines are frozen mid-flight: a large slowdown fault makes
their next step last minutes, so between the two scrapes nothing moves; the dialect each
server renders is switched between the scrapes (the same server object, the same core).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from aibrix_spec.models import AUTOSCALING_METRICS
from runtime_components.engine_sim.cluster import EngineCluster
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.gateway.endpoints import DiscoveredEndpoint, EndpointTable, EngineSample
from runtime_components.gateway.scraper import MetricScraper
from runtime_components.scaler.kube import PodEndpoint
from runtime_components.scaler.scrape import read_engine_pods

MODEL = "llama-3-8b"
ENGINE_METRICS = {k: m for k, m in AUTOSCALING_METRICS.items() if m.source == "engine"}
COMPARED = ("running", "waiting", "kv_cache_usage", "ttft_s", "tpot_s", "throughput_tps", "prefix_hit_ratio", "max_loras")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _scrape_both(cluster: EngineCluster, scrapers: dict[str | None, MetricScraper]) -> None:
    """One scrape per reader, each with the servers switched to the dialect it expects."""
    for configured, scraper in scrapers.items():
        for server in cluster.servers:
            server.metrics_dialect = configured or "sglang"  # the detecting reader gets SGLang pages
        await scraper.scrape_once()


async def _scaler_totals(session: aiohttp.ClientSession, cluster: EngineCluster, dialect: str,
                         configured: str | None) -> dict[str, float]:  # fmt: skip
    for server in cluster.servers:
        server.metrics_dialect = dialect
    pods = [PodEndpoint(f"engine-{s.index}", "127.0.0.1", s.port, True) for s in cluster.servers]
    totals = {}
    for key, metric in ENGINE_METRICS.items():
        reading = await read_engine_pods(session, pods, names=metric.names, labels={"model_name": MODEL},
                                         default_port=8000, path="/metrics", timeout_s=5.0, engine=configured)  # fmt: skip
        assert reading.errors == () and reading.reporting == 2, (key, dialect, configured, reading)
        totals[key] = reading.total
    return totals


async def _live_readings() -> tuple[dict[str | None, list[EngineSample]], dict[tuple[str, str | None], dict[str, float]]]:
    config = EngineConfig(accelerator="nvidia-a10", model_arch=MODEL, max_num_seqs=4)
    cluster = EngineCluster([config, config], speedup=20.0)
    await cluster.start()
    clock = _Clock()
    tables: dict[str | None, EndpointTable] = {}
    scrapers: dict[str | None, MetricScraper] = {}
    for configured in ("vllm", "sglang", None):
        table = EndpointTable(staleness_s=1e9)
        table.replace([DiscoveredEndpoint(f"127.0.0.1:{s.port}", f"engine-{s.index}", MODEL) for s in cluster.servers])
        tables[configured] = table
        scrapers[configured] = MetricScraper(table, 1.0, 5.0, clock=clock, engines={MODEL: configured})
    try:
        await _scrape_both(cluster, scrapers)  # the "before" of every delta: idle engines
        async with aiohttp.ClientSession() as session:
            shared = "You answer questions about one database schema. " * 40

            async def ask(i: int) -> None:
                body = {"model": MODEL, "prompt": shared + f"question {i}", "max_tokens": 300 if i >= 4 else 8}
                url = cluster.endpoints()[i % 2]["url"] + "/v1/completions"
                async with session.post(url, json=body) as resp:
                    await resp.read()

            await asyncio.gather(*(ask(i) for i in range(4)))  # short ones: TTFT, ITL and prefix hits recorded
            long_ones = [asyncio.create_task(ask(i)) for i in range(4, 23)]  # then a queue that stays
            await asyncio.sleep(0.3)  # ~6 simulated seconds: 4 running, the rest queued, on each engine
            for server in cluster.servers:  # freeze: the next step lasts minutes
                async with session.post(f"http://127.0.0.1:{server.port}/admin/faults",
                                        data=json.dumps({"slowdown": 1e6})) as resp:  # fmt: skip
                    assert resp.status == 200
            await asyncio.sleep(0.5)  # the step in progress ends; the following one never does
            assert all(s.core.num_running + s.core.num_waiting > 0 for s in cluster.servers)  # premise: busy
            assert all(s.core.stats().num_preemptions == 0 for s in cluster.servers)  # premise: queries == prompts
            clock.now = 10.0
            await _scrape_both(cluster, scrapers)
            totals = {(d, c): await _scaler_totals(session, cluster, d, c)
                      for d, c in (("vllm", "vllm"), ("sglang", "sglang"), ("sglang", None), ("vllm", None))}
            for task in long_ones:
                task.cancel()
            await asyncio.gather(*long_ones, return_exceptions=True)
        samples = {}
        for configured, table in tables.items():
            states = {s.address: s for s in table.states(MODEL, clock.now)[0]}
            samples[configured] = [table._entries[a].sample for a in sorted(states)]  # noqa: SLF001 (the raw sample)
        return samples, totals
    finally:
        for scraper in scrapers.values():
            await scraper.close()
        await cluster.stop()


@pytest.fixture(scope="module")
def readings():
    return asyncio.run(_live_readings())


def test_the_gateway_reads_the_same_state_the_same_in_both_dialects(readings):
    samples, _ = readings
    vllm, sglang, detected = samples["vllm"], samples["sglang"], samples[None]
    assert [s.engine for s in vllm] == ["vllm"] * 2 and [s.engine for s in sglang + detected] == ["sglang"] * 4
    for v, s, d in zip(vllm, sglang, detected):
        for name in COMPARED:
            assert getattr(v, name) == getattr(s, name) == getattr(d, name), name
    # The comparison is not between two empty samples, nor between equal fields.
    first = vllm[0]
    assert first.running != first.waiting, first
    assert first.running and first.waiting and first.kv_cache_usage and first.ttft_s and first.tpot_s
    assert first.throughput_tps and first.prefix_hit_ratio and first.max_loras == 4


def test_the_scaler_reads_the_same_state_the_same_in_both_dialects(readings):
    _, totals = readings
    reference = totals[("vllm", "vllm")]
    assert 0 < reference["num_requests_running"] != reference["num_requests_waiting"] > 0
    assert reference["kv_cache_usage"] > 0
    for key, values in totals.items():
        assert values == reference, key


def test_routing_and_scaling_decisions_are_identical_on_one_seeded_trace():
    from benchmarks.metric_dialects import Scenario, run

    scenario = Scenario(duration_s=150.0, phases=((30.0, 2.0), (80.0, 10.0), (40.0, 2.0)), max_engines=4,
                        startup_s=(10.0, 20.0))  # fmt: skip
    result = run(scenario=scenario, policies=("least-request,least-kv-cache,least-latency,throughput",))
    rows = {r["variant"]: r for r in result["rows"]}
    assert result["nontrivial"], rows["vllm"]  # several engines picked, several scaling decisions
    assert result["dialect_decisions_identical"], [r["first_difference"] for r in result["rows"]]
    assert result["blind_baseline_differs"] and rows["sglang-blind"]["unknown_samples"] > 0
