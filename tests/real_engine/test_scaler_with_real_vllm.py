"""The autoscaler's own scrape and decision code on real vLLM metrics.

``runtime_components.scaler.scrape.read_engine_pods`` scrapes both real instances for
``vllm:num_requests_running + vllm:num_requests_waiting`` (Knative's concurrency) and
``vllm:kv_cache_usage_perc``, labelled ``model_name=tiny``; the readings feed
``runtime_components.scaler.autoscaler.Autoscaler`` (KPA, target 4 in-flight requests per
replica, 1..8 replicas), exactly as the controller does each scrape tick. Idle engines give
a total of 0 and the decision is the minimum; with 64 clients generating back to back (32 per
instance) the panic window's average passes 2 x ready pods x target and the decision rises
above 2. The load lasts until the decision rises (or a bound), whatever the machine's speed:
a fixed batch of generations once finished within a second on a quiet machine, before a 1-s
window could see it (peak 16 then 14, decision at most 2), so each client keeps one long
generation in flight until the load phase ends.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import urllib.request

import aiohttp

from aibrix_spec.components.scaler import ScalingTarget
from runtime_components.scaler.autoscaler import Autoscaler
from runtime_components.scaler.kube import PodEndpoint
from runtime_components.scaler.scrape import MetricReading, read_engine_pods

CONCURRENCY = 64
# Two CPU engines streaming 32 generations each answer /metrics late on a busy 2-core machine
# (over 5 s once); this test is about what they report, not how fast.
SCRAPE_TIMEOUT_S = 30.0
TARGET = ScalingTarget.model_validate({
    "name": "tiny",
    "scaleTargetRef": {"kind": "Deployment", "name": "tiny", "namespace": "default"},
    "podSelector": {"model.aibrix.ai/name": "tiny"},
    "metric": {"name": "vllm:num_requests_running", "sumWith": ["vllm:num_requests_waiting"],
               "source": "engine", "aggregation": "per-pod", "engine": {"labels": {"model_name": "tiny"}}},
    "target": 4, "minReplicas": 1, "maxReplicas": 8, "policy": "kpa",
    "kpa": {"stableWindowSeconds": 6, "panicWindowSeconds": 1},
    "scrapeIntervalSeconds": 0.25,
})


def _pods(servers) -> list[PodEndpoint]:
    return [PodEndpoint(name=f"pod-{i}", ip="127.0.0.1", port=s.port, ready=True) for i, s in enumerate(servers)]


async def _read(session: aiohttp.ClientSession, servers, names: tuple[str, ...]) -> MetricReading:
    return await read_engine_pods(session, _pods(servers), names=names, labels={"model_name": "tiny"},
                                  default_port=8000, path="/metrics", timeout_s=SCRAPE_TIMEOUT_S)


def _generate_until(stop: threading.Event, url: str, done: list[int]) -> None:
    """One client: long generations back to back until ``stop`` (the last one still finishes)."""
    body = {"model": "tiny", "prompt": "select users from orders", "max_tokens": 400, "ignore_eos": True}
    while not stop.is_set():
        req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=300) as resp:
            done.append(resp.status)


def test_kpa_decision_follows_real_vllm_load(vllm_pair):
    scaler = Autoscaler(TARGET)
    names = TARGET.metric.names
    t0 = time.monotonic()

    async def sample(session: aiohttp.ClientSession) -> MetricReading:
        reading = await _read(session, vllm_pair, names)
        assert reading.reporting == 2 and not reading.errors, reading
        scaler.record(time.monotonic() - t0, reading.total, reading.reporting)
        return reading

    async def idle_phase() -> tuple[int, float]:
        async with aiohttp.ClientSession() as session:
            for _ in range(6):
                reading = await sample(session)
                await asyncio.sleep(0.25)
            kv = await _read(session, vllm_pair, ("vllm:kv_cache_usage_perc",))
        assert kv.reporting == 2 and 0.0 <= kv.total <= 2.0, kv  # a fraction per engine, 1.0 = full
        return scaler.decide(time.monotonic() - t0, current_replicas=2, ready_pods=2).desired, reading.total

    idle_desired, idle_total = asyncio.run(idle_phase())
    assert idle_total == 0.0
    assert idle_desired == 1

    done: list[int] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_generate_until, args=(stop, vllm_pair[i % 2].url, done), daemon=True)
               for i in range(CONCURRENCY)]
    for thread in threads:
        thread.start()

    async def load_phase() -> tuple[float, int]:
        peak, desired = 0.0, 0
        async with aiohttp.ClientSession() as session:
            for _ in range(300):  # bounded: until the decision rises
                reading = await sample(session)
                peak = max(peak, reading.total)
                desired = scaler.decide(time.monotonic() - t0, current_replicas=2, ready_pods=2).desired
                if desired > 2:
                    break
                await asyncio.sleep(0.1)
        return peak, desired

    try:
        peak, loaded_desired = asyncio.run(load_phase())
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
    assert peak > 2 * TARGET.target, f"never saw the load in vLLM's metrics (peak {peak})"
    # KPA's panic decision is ceil(panic-window average / target): above the 2 ready pods, and
    # never more than the peak in-flight total seen would justify.
    assert 2 < loaded_desired <= math.ceil(peak / TARGET.target), (loaded_desired, peak)
    assert not any(thread.is_alive() for thread in threads)
    assert len(done) >= CONCURRENCY and set(done) == {200}, done

    async def after() -> MetricReading:
        async with aiohttp.ClientSession() as session:
            return await _read(session, vllm_pair, names)

    assert asyncio.run(after()).total == 0.0  # every request finished: the engines report idle again
