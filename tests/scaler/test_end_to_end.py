"""End to end: the scaler's controller drives a local Deployment whose pods are real simulated
engines (engine_sim's HTTP servers, many per process) under a closed-loop load ramp, through
the official kubernetes client and the local API server, and settles at ceil(load / target)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest

from aibrix_spec.components.scaler import ScalerConfig
from runtime_components.common.fake_kube import PORT_LABEL, FakeKubeApi, Workload
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.server import EngineServer
from runtime_components.scaler.controller import Controller
from runtime_components.scaler.kube import KubeApi, connect
from runtime_components.scaler.local.load import ClosedLoopLoad
from tests.scaler.helpers import serve

SELECTOR = {"model.aibrix.ai/name": "llama-3-8b"}
TARGET_PER_POD = 4


class InProcessEngines:
    """A pod launcher that starts an engine_sim EngineServer per pod after a start-up delay."""

    def __init__(self, startup_delay: float) -> None:
        self.startup_delay = startup_delay
        self.servers: dict[str, EngineServer] = {}
        self.started = 0
        self.stopped = 0

    async def start(self, pod_name: str) -> int:
        await asyncio.sleep(self.startup_delay)
        server = EngineServer(EngineConfig(model_arch="llama-3-8b"), index=self.started)
        self.servers[pod_name] = server
        self.started += 1
        return await server.start("127.0.0.1", 0)

    async def stop(self, pod_name: str) -> None:
        server = self.servers.pop(pod_name, None)
        if server is not None:
            await server.stop()
            self.stopped += 1


def _config() -> ScalerConfig:
    return ScalerConfig.model_validate({"targets": [{
        "name": "llama-3-8b",
        "scaleTargetRef": {"name": "llama-3-8b", "namespace": "llm"},
        "podSelector": SELECTOR,
        "metric": {"name": "vllm:num_requests_running", "sumWith": ["vllm:num_requests_waiting"],
                   "source": "engine", "aggregation": "per-pod",
                   "engine": {"labels": {"model_name": "llama-3-8b"}}},
        "target": TARGET_PER_POD, "minReplicas": 1, "maxReplicas": 4,
        "policy": "apa",
        "apa": {"windowSeconds": 3, "syncPeriodSeconds": 0.5, "scaleDownCooldownSeconds": 2},
        "scrapeIntervalSeconds": 0.25, "staleAfterSeconds": 10,
    }]})


async def _settle(cluster: FakeKubeApi, expected: int, *, hold_s: float, timeout_s: float) -> list[int]:
    """Wait until spec and ready replicas both equal `expected` for `hold_s`; return what was seen."""
    workload = cluster.workloads[("llm", "llama-3-8b")]
    seen: list[int] = []
    stable_since: float | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = sum(1 for pod in cluster.pods.values() if pod["status"]["phase"] == "Running")
        seen.append(workload.replicas)
        if workload.replicas == expected and ready == expected:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= hold_s:
                return seen
        else:
            stable_since = None
        await asyncio.sleep(0.1)
    raise AssertionError(f"did not settle at {expected} replicas within {timeout_s} s; spec replicas seen: {seen[-40:]}")


@pytest.mark.slow
def test_scaler_follows_a_load_ramp_with_real_simulated_engines():
    async def scenario():
        launcher = InProcessEngines(startup_delay=0.5)
        async with contextlib.AsyncExitStack() as stack:
            cluster = FakeKubeApi()
            workload = Workload("llm", "llama-3-8b", dict(SELECTOR), 1, launcher)
            cluster.add_workload(workload)
            api_url = await stack.enter_async_context(serve(cluster.app()))
            await cluster.reconcile(workload)
            api = connect(api_url=api_url)
            stack.callback(api.close)
            controller = Controller(_config(), KubeApi(api), identity="e2e")
            stop = asyncio.Event()
            loop_task = asyncio.create_task(controller.run(stop))
            session = await stack.enter_async_context(aiohttp.ClientSession())

            def endpoints() -> list[str]:
                return [f"http://127.0.0.1:{pod['metadata']['labels'][PORT_LABEL]}"
                        for pod in cluster.pods.values() if pod["status"]["phase"] == "Running"]

            load = ClosedLoopLoad(endpoints, session, model="llama-3-8b", max_tokens=200)
            try:
                phases = []
                for concurrency in (3 * TARGET_PER_POD, TARGET_PER_POD - 1):
                    load.set_concurrency(concurrency)
                    expected = -(-concurrency // TARGET_PER_POD)
                    await _settle(cluster, expected, hold_s=3.0, timeout_s=60.0)
                    phases.append((concurrency, workload.replicas, launcher.started))
            finally:
                await load.stop()
                stop.set()
                await asyncio.wait_for(loop_task, timeout=10)
            history = list(controller.targets["llama-3-8b"].history)
        # The exit stack stopped the API server, which stopped every engine.
        return phases, launcher, load, history, cluster
    phases, launcher, load, history, cluster = asyncio.run(scenario())
    assert [p[:2] for p in phases] == [(12, 3), (3, 1)]
    assert launcher.started >= 3
    assert launcher.stopped == launcher.started and not launcher.servers
    assert load.completed > 0
    assert all(1 <= desired <= 4 for _, _, desired, _ in history)
    reasons = {reason for _, _, _, reason in history}
    assert {"above-band", "below-band"} <= reasons
    assert any(e["reason"] == "ScaledUp" for e in cluster.events)
    assert any(e["reason"] == "ScaledDown" for e in cluster.events)
