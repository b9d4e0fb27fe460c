"""A pod whose metrics fail or freeze is not an idle pod (issue 22, item 12).

Real controller, real HTTP scrapes, the in-memory Kubernetes API of `common/fake_kube`;
engines are vLLM-shaped /metrics pages whose numbers the test moves (tokens grow while the
pods serve) and whose failures the test switches on."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runtime_components.common.fake_kube import FakeKubeApi, ReadyAtOnce, Workload, pod_object
from runtime_components.scaler.controller import Controller
from runtime_components.scaler.kube import KubeApi, connect
from tests.scaler.helpers import config, engine_page, serve

SELECTOR = {"model.aibrix.ai/name": "llama"}


class Engine:
    """One pod's /metrics: ``running`` requests, a token counter, and a failure switch."""

    def __init__(self, running: float) -> None:
        self.running = running
        self.tokens = 0.0
        self.mode = "ok"  # ok | error | frozen
        self.stamp_ms: int | None = None

    def app(self) -> web.Application:
        async def handler(_request: web.Request) -> web.Response:
            if self.mode == "error":
                return web.Response(status=500, text="engine failed\n")
            return web.Response(text=engine_page(self.running, self.tokens, timestamp_ms=self.stamp_ms),
                                content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", handler)
        return app

    def serve_one_second(self) -> None:
        if self.mode == "ok":
            self.tokens += 40 * self.running  # serving: the counter moves
            if self.stamp_ms is not None:
                self.stamp_ms += 1000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _cluster(engines: list[Engine], stack: contextlib.AsyncExitStack) -> tuple[FakeKubeApi, KubeApi]:
    cluster = FakeKubeApi()
    api_url = await stack.enter_async_context(serve(cluster.app()))
    cluster.add_workload(Workload("llm", "llama", dict(SELECTOR), len(engines), ReadyAtOnce()))
    for i, engine in enumerate(engines):
        url = await stack.enter_async_context(serve(engine.app()))
        labels = {**SELECTOR, "model.aibrix.ai/port": url.rsplit(":", 1)[1]}
        cluster.put_pod(pod_object(f"llama-{i}", labels, namespace="llm", ip="127.0.0.1"))
    api = connect(api_url=api_url)
    stack.callback(api.close)
    return cluster, KubeApi(api)


POLICIES: dict[str, dict[str, Any]] = {
    "hpa": {"policy": "hpa", "hpa": {"scaleDownStabilizationSeconds": 0, "metricWindowSeconds": 5}, "apa": None},
    "kpa": {"policy": "kpa", "kpa": {"stableWindowSeconds": 6, "panicWindowSeconds": 2}, "apa": None},
    "apa": {},
}


def _run(engines: list[Engine], overrides: dict[str, Any], rounds: int, change_at: int, change: Any):
    async def scenario() -> tuple[list[int], list[Any]]:
        async with contextlib.AsyncExitStack() as stack:
            cluster, kube = await _cluster(engines, stack)
            clock = Clock()
            controller = Controller(config(**overrides), kube, identity="a", clock=clock)
            state = controller.targets["llama"]
            replicas, readings = [], []
            async with aiohttp.ClientSession() as session:
                for second in range(rounds):
                    if second == change_at:
                        change()
                    for engine in engines:
                        engine.serve_one_second()
                    readings.append(await controller.scrape_once(session, state))
                    await controller.decide_once(state)
                    replicas.append(cluster.workloads[("llm", "llama")].replicas)
                    clock.now += 1.0
            return replicas, readings

    return asyncio.run(scenario())


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_two_of_four_pods_failing_under_unchanged_load_do_not_scale_down(policy):
    engines = [Engine(running=8.0) for _ in range(4)]  # 32 requests for a target of 10 per pod: 4 pods

    def fail_two() -> None:
        engines[2].mode = engines[3].mode = "error"

    replicas, readings = _run(engines, POLICIES[policy], rounds=25, change_at=3, change=fail_two)
    assert readings[-1].reporting == 2 and readings[-1].expected == 4
    assert replicas == [4] * 25, f"{policy}: replicas went {replicas}"


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_missing_pods_do_not_exaggerate_a_scale_up(policy):
    # The two reporting pods are busy (15 each, target 10); the missing two count as 0, so
    # the reading is 30 over 4 pods: no change rather than 2 x 15 extrapolated to 6 pods.
    engines = [Engine(running=15.0), Engine(running=15.0), Engine(running=15.0), Engine(running=15.0)]

    def fail_two() -> None:
        engines[2].mode = engines[3].mode = "error"

    replicas, _ = _run(engines, {**POLICIES[policy], "maxReplicas": 10}, rounds=12, change_at=0, change=fail_two)
    assert max(replicas) <= 4 and min(replicas) == 4, f"{policy}: replicas went {replicas}"


def test_frozen_pods_count_as_not_reporting():
    # Pods 2 and 3 keep saying "30 running" but stop producing tokens: after frozenAfterSeconds
    # they are left out (and, being missing under a scale-up reading, count as 0).
    engines = [Engine(running=5.0), Engine(running=5.0), Engine(running=30.0), Engine(running=30.0)]

    def freeze() -> None:
        engines[2].mode = engines[3].mode = "frozen"

    _, readings = _run(engines, {"frozenAfterSeconds": 5, "maxReplicas": 4}, rounds=10, change_at=1, change=freeze)
    assert [r.reporting for r in readings] == [4, 4, 4, 4, 4, 2, 2, 2, 2, 2]  # last progress seen at second 0
    assert "frozen: metric reads 30 but no counter moved for 5 s" in readings[5].errors[0]


def test_idle_pods_repeating_themselves_are_not_frozen():
    engines = [Engine(running=0.0) for _ in range(2)]
    _, readings = _run(engines, {"frozenAfterSeconds": 3, "minReplicas": 2}, rounds=8, change_at=0, change=lambda: None)
    assert [r.reporting for r in readings] == [2] * 8


def test_stopped_sample_timestamps_are_frozen():
    engines = [Engine(running=0.0) for _ in range(2)]
    for engine in engines:
        engine.stamp_ms = 1_700_000_000_000

    def stop_clock() -> None:
        engines[1].mode = "frozen"

    _, readings = _run(engines, {"frozenAfterSeconds": 3, "minReplicas": 2}, rounds=8, change_at=1, change=stop_clock)
    assert [r.reporting for r in readings] == [2, 2, 2, 1, 1, 1, 1, 1]  # last timestamp move at second 0
    assert "frozen: sample timestamps stopped" in readings[-1].errors[0]


@pytest.mark.parametrize("policy", ["hpa", "kpa", "apa"])
def test_robustness_benchmark_scenario_scales_down_only_without_the_fill_in(policy):
    from benchmarks.robustness import scaler_run

    assert scaler_run(policy, fill=True) == (0, [4] * 120)
    downs, trace = scaler_run(policy, fill=False)  # missing pods read as idle: the behaviour before
    assert downs >= 1 and min(trace) < 4
