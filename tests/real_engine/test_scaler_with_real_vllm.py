"""The autoscaler's own scrape and decision code on real vLLM metrics.

``runtime_components.scaler.scrape.read_engine_pods`` scrapes both real instances for
``vllm:num_requests_running + vllm:num_requests_waiting`` (Knative's concurrency) and
``vllm:kv_cache_usage_perc``, labelled ``model_name=tiny``; the readings feed
``runtime_components.scaler.autoscaler.Autoscaler`` (KPA, target 4 in-flight requests per
replica, 1..8 replicas), exactly as the controller does each scrape tick (a pod that does not
answer is filled in by the autoscaler's missing-pod rule). Idle engines give a total of 0 and
the decision is the minimum; with 64 clients generating back to back (32 per instance) the
load passes 2 x ready pods x target and the decision rises above 2.

Nothing here depends on the machine's speed: each client keeps one long generation in flight
until the decision rises (or 120 s pass), because a fixed batch once finished within a second
on a quiet machine, before a 1-s window could see it (peak 16, then 14: decision at most 2);
and under load a CPU engine can stall its HTTP server for half a minute (seen in CI: no
/metrics answer within 30 s, then all 32 generations at once), so a load-phase scrape that
misses a pod is what the controller would see, not a failure.
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
SCRAPE_TIMEOUT_S = 5.0
LOAD_PHASE_S = 120.0
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

    async def sample(session: aiohttp.ClientSession, *, complete: bool = True) -> MetricReading:
        reading = await _read(session, vllm_pair, names)
        if complete:
            assert reading.reporting == 2 and not reading.errors, reading
        if reading.reporting:  # as the controller records a scrape round
            scaler.record(time.monotonic() - t0, reading.total, reading.reporting, expected_pods=reading.expected)
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

    misses: list[str] = []

    async def load_phase() -> tuple[float, int]:
        peak, desired = 0.0, 0
        deadline = time.monotonic() + LOAD_PHASE_S
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:  # until the decision rises
                reading = await sample(session, complete=False)
                misses.extend(reading.errors)
                # What the pods reported; the autoscaler's fill-in for a missing pod records at
                # most max(this, 2 pods x target), so it cannot lift the decision past ceil(peak / target).
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
    assert peak > 2 * TARGET.target, f"never saw the load in vLLM's metrics (peak {peak}; missed scrapes {misses})"
    # KPA's decision is ceil(window average / target): above the 2 ready pods, and never more
    # than the peak in-flight total seen would justify.
    assert 2 < loaded_desired <= math.ceil(peak / TARGET.target), (loaded_desired, peak, misses)
    assert not any(thread.is_alive() for thread in threads)
    assert len(done) >= CONCURRENCY and set(done) == {200}, done

    async def idle_again() -> MetricReading:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # every request has finished; the gauges follow within a step
                reading = await _read(session, vllm_pair, names)
                if reading.reporting == 2 and reading.total == 0.0:
                    break
                await asyncio.sleep(0.1)
        return reading

    reading = asyncio.run(idle_again())
    assert reading.reporting == 2 and reading.total == 0.0, reading  # the engines report idle again
