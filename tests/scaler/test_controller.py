"""The controller's real HTTP calls through the official kubernetes client, against the
in-memory API server of `runtime_components/common/fake_kube`, with engines replaced by static /metrics pages."""

from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp

from aibrix_spec.components.scaler import LeaderElection
from runtime_components.common.fake_kube import FakeKubeApi, ReadyAtOnce, Workload, pod_object
from runtime_components.scaler.controller import Controller
from runtime_components.scaler.kube import KubeApi, connect
from runtime_components.scaler.lease import LeaderElector
from tests.scaler.helpers import config, metrics_app, serve

SELECTOR = {"model.aibrix.ai/name": "llama"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _cluster_with_engines(values: list[dict[str, float]], stack, replicas: int | None = None):
    """A FakeKubeApi whose Deployment `llm/llama` has one pod per entry of `values`."""
    cluster = FakeKubeApi()
    api_url = await stack.enter_async_context(serve(cluster.app()))
    ports = []
    for v in values:
        url = await stack.enter_async_context(serve(metrics_app(v)))
        ports.append(int(url.rsplit(":", 1)[1]))
    cluster.add_workload(Workload("llm", "llama", dict(SELECTOR), replicas or len(values), ReadyAtOnce()))
    for i, port in enumerate(ports):
        cluster.put_pod(pod_object(f"llama-{i}", {**SELECTOR, "model.aibrix.ai/port": str(port)}, namespace="llm",
                                   ip="127.0.0.1"))
    api = connect(api_url=api_url)
    stack.callback(api.close)
    return cluster, KubeApi(api)


def test_scale_up_writes_merge_patch_and_records_event():
    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            cluster, kube = await _cluster_with_engines([{"vllm:num_requests_running": 25.0}] * 2, stack)
            clock = Clock()
            controller = Controller(config(), kube, identity="a", clock=clock)
            state = controller.targets["llama"]
            async with aiohttp.ClientSession() as session:
                reading = await controller.scrape_once(session, state)
                decision = await controller.decide_once(state)
            return cluster, reading, decision, controller
    cluster, reading, decision, controller = asyncio.run(scenario())
    assert (reading.total, reading.reporting) == (50.0, 2)
    assert (decision.desired, decision.reason) == (4, "above-band")
    calls = [(r.method, r.path, r.content_type) for r in cluster.requests]
    assert ("PATCH", "/apis/apps/v1/namespaces/llm/deployments/llama/scale", "application/merge-patch+json") in calls
    assert any(m == "GET" and p == "/api/v1/namespaces/llm/pods" for m, p, _ in calls)
    assert cluster.workloads[("llm", "llama")].replicas == 4
    event = cluster.events[-1]
    assert (event["reason"], event["type"], event["involvedObject"]["name"]) == ("ScaledUp", "Normal", "llama")
    assert "apa: 2 -> 4 replicas (above-band)" in event["message"]
    exported = controller.metrics.registry.get_sample_value
    assert exported("aibrix_scaler_desired_replicas", {"target": "llama"}) == 4
    assert exported("aibrix_scaler_decisions_total", {"target": "llama", "reason": "above-band"}) == 1
    assert exported("aibrix_scaler_scale_writes_total", {"target": "llama", "result": "ok"}) == 1


HOLD_CASES = [
    # (scrape first?, seconds between scrape and decision, expected reason)
    (False, 0.0, "metrics-missing"),
    (True, 31.0, "metrics-stale"),
]


def test_missing_and_stale_metrics_hold_and_warn_once():
    for scrape_first, gap, reason in HOLD_CASES:
        async def scenario(scrape_first: bool = scrape_first, gap: float = gap):
            import contextlib
            async with contextlib.AsyncExitStack() as stack:
                cluster, kube = await _cluster_with_engines([{"vllm:num_requests_running": 45.0}], stack, replicas=3)
                clock = Clock()
                controller = Controller(config(), kube, identity="a", clock=clock)
                state = controller.targets["llama"]
                if scrape_first:
                    async with aiohttp.ClientSession() as session:
                        await controller.scrape_once(session, state)
                clock.now += gap
                first = await controller.decide_once(state)
                clock.now += 2
                second = await controller.decide_once(state)
                return cluster, first, second
        cluster, first, second = asyncio.run(scenario())
        assert (first.desired, first.reason, first.held) == (3, reason, True), reason
        assert second.reason == reason
        assert cluster.workloads[("llm", "llama")].replicas == 3, reason
        warnings = [e for e in cluster.events if e["type"] == "Warning"]
        assert len(warnings) == 1, reason
        assert warnings[0]["reason"] == "MetricsUnavailable"
        assert f"holding 3 replicas: {reason}" in warnings[0]["message"]


def test_decision_never_leaves_bounds_even_when_holding():
    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            # 7 replicas were set by hand above maxReplicas 5; metrics are missing.
            cluster, kube = await _cluster_with_engines([], stack, replicas=7)
            controller = Controller(config(), kube, identity="a", clock=Clock())
            decision = await controller.decide_once(controller.targets["llama"])
            return cluster, decision
    cluster, decision = asyncio.run(scenario())
    assert (decision.desired, decision.reason) == (5, "metrics-missing")
    assert cluster.workloads[("llm", "llama")].replicas == 5


def test_huge_load_is_clamped_to_max_replicas():
    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            cluster, kube = await _cluster_with_engines([{"vllm:num_requests_running": 500.0}] * 4, stack)
            controller = Controller(config(), kube, identity="a", clock=Clock())
            state = controller.targets["llama"]
            async with aiohttp.ClientSession() as session:
                await controller.scrape_once(session, state)
            return await controller.decide_once(state)
    decision = asyncio.run(scenario())
    assert (decision.desired, decision.reason) == (5, "clamped-to-max")


def test_unready_and_unreachable_pods_are_not_counted():
    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            cluster, kube = await _cluster_with_engines([{"vllm:num_requests_running": 10.0}], stack)
            cluster.put_pod(pod_object("llama-starting", dict(SELECTOR), namespace="llm", ip=None, ready=False))
            cluster.put_pod(pod_object("llama-gone", {**SELECTOR, "model.aibrix.ai/port": "1"}, namespace="llm",
                                       ip="127.0.0.1"))
            controller = Controller(config(), kube, identity="a", clock=Clock())
            state = controller.targets["llama"]
            async with aiohttp.ClientSession() as session:
                reading = await controller.scrape_once(session, state)
            return reading, state.ready_pods
    reading, ready = asyncio.run(scenario())
    assert (reading.total, reading.reporting, ready) == (10.0, 1, 2)
    assert len(reading.errors) == 1 and reading.errors[0].startswith("llama-gone: http://127.0.0.1:1/metrics")


def test_optimizer_source_reads_the_total_gauge():
    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            cluster, kube = await _cluster_with_engines([], stack, replicas=2)
            from aiohttp import web

            async def handler(_request):
                text = ("# TYPE aibrix_optimizer_desired_replicas gauge\n"
                        'aibrix_optimizer_desired_replicas{model="llama",pool="l20"} 4\n'
                        'aibrix_optimizer_desired_replicas{model="llama",pool="a10"} 9\n')
                return web.Response(text=text)
            app = web.Application()
            app.router.add_get("/metrics", handler)
            url = await stack.enter_async_context(serve(app))
            cfg = config(
                metric={"name": "aibrix_optimizer_desired_replicas", "source": "optimizer", "aggregation": "total",
                         "optimizer": {"url": f"{url}/metrics", "labels": {"model": "llama", "pool": "l20"}}},
                target=1, policy="hpa", apa=None, podSelector={},
            )
            controller = Controller(cfg, kube, identity="a", clock=Clock())
            state = controller.targets["llama"]
            async with aiohttp.ClientSession() as session:
                reading = await controller.scrape_once(session, state)
            decision = await controller.decide_once(state)
            return cluster, reading, decision
    cluster, reading, decision = asyncio.run(scenario())
    assert (reading.total, reading.reporting) == (4.0, 1)
    assert (decision.desired, decision.reason) == (4, "scale-up")
    assert cluster.workloads[("llm", "llama")].replicas == 4


def test_lease_one_leader_then_takeover_after_expiry():
    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            cluster, kube = await _cluster_with_engines([], stack, replicas=1)
            settings = LeaderElection(enabled=True, namespace="llm", leaseDurationSeconds=15, renewPeriodSeconds=5)
            t = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
            a = LeaderElector(kube, settings, "scaler-a", now=lambda: t[0])
            b = LeaderElector(kube, settings, "scaler-b", now=lambda: t[0])
            steps = [await a.try_acquire_or_renew(), await b.try_acquire_or_renew()]
            t[0] += dt.timedelta(seconds=10)
            steps += [await a.try_acquire_or_renew(), await b.try_acquire_or_renew()]
            t[0] += dt.timedelta(seconds=16)  # a stopped renewing
            steps += [await b.try_acquire_or_renew(), await a.try_acquire_or_renew()]
            lease = cluster.leases[("llm", "aibrix-scaler")]
            return steps, lease
    steps, lease = asyncio.run(scenario())
    assert steps == [True, False, True, False, True, False]
    assert lease["spec"]["holderIdentity"] == "scaler-b"
    assert lease["spec"]["leaseTransitions"] == 1


def test_follower_does_not_decide_or_write():
    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            cluster, kube = await _cluster_with_engines([{"vllm:num_requests_running": 50.0}], stack)
            cfg = config().model_copy(update={"leader_election": LeaderElection(enabled=True, namespace="llm")})
            leader = Controller(cfg, kube, identity="a", clock=Clock())
            follower = Controller(cfg, kube, identity="b", clock=Clock())
            await leader.elector.try_acquire_or_renew()
            await follower.elector.try_acquire_or_renew()
            state = follower.targets["llama"]
            async with aiohttp.ClientSession() as session:
                await follower.scrape_once(session, state)
            return cluster, await follower.decide_once(state)
    cluster, decision = asyncio.run(scenario())
    assert decision is None
    assert not any(r.method == "PATCH" for r in cluster.requests)


def test_run_loop_scales_and_stops_cleanly():
    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            cluster, kube = await _cluster_with_engines([{"vllm:num_requests_running": 30.0}], stack)
            cfg = config(apa={"windowSeconds": 10, "syncPeriodSeconds": 0.2}, scrapeIntervalSeconds=0.1)
            controller = Controller(cfg, kube, identity="a")
            stop = asyncio.Event()
            task = asyncio.create_task(controller.run(stop))
            for _ in range(100):  # bounded: at most ~10 s
                if cluster.workloads[("llm", "llama")].replicas == 3:
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.wait_for(task, timeout=10)
            return cluster
    cluster = asyncio.run(scenario())
    assert cluster.workloads[("llm", "llama")].replicas == 3


def test_held_requests_count_as_demand_above_zero_without_a_zero_gate():
    """Under flow control (minReplicas 1) the gateway's held requests add to the request metric;
    the target has no zero gate, and a demand round with nothing held still runs without one."""
    from aiohttp import web

    held = {"n": 30.0}

    async def gateway_metrics(_request: web.Request) -> web.Response:
        return web.Response(text=(
            "# TYPE aibrix_gateway_flow_held_requests gauge\n"
            f'aibrix_gateway_flow_held_requests{{model="m"}} {held["n"]}\n'
            "# TYPE aibrix_gateway_flow_inflight_requests gauge\n"
            'aibrix_gateway_flow_inflight_requests{model="m"} 20\n'), content_type="text/plain")

    async def scenario():
        import contextlib
        async with contextlib.AsyncExitStack() as stack:
            _cluster, kube = await _cluster_with_engines([{"vllm:num_requests_running": 10.0}] * 2, stack)
            app = web.Application()
            app.router.add_get("/metrics", gateway_metrics)
            gateway = await stack.enter_async_context(serve(app))
            cfg = config(demand={"urls": [gateway + "/metrics"], "model": "m"})
            controller = Controller(cfg, kube, identity="a", clock=Clock())
            state = controller.targets["llama"]
            async with aiohttp.ClientSession() as session:
                await controller.decide_once(state)  # learns the spec replicas (2)
                await controller.demand_once(session, state)
                reading = await controller.scrape_once(session, state)
                up = await controller.decide_once(state)
                held["n"] = 0.0
                await controller.demand_once(session, state)
            return controller, state, reading, up
    controller, state, reading, up = asyncio.run(scenario())
    assert state.gate is None
    assert reading.total == 20.0
    # 20 running + 30 held, no pod starting to absorb them
    assert controller.metrics.registry.get_sample_value("aibrix_scaler_metric_total", {"target": "llama"}) == 50.0
    assert up.desired == 4  # 50 / 10 asks for 5; APA doubles at most per step (20 alone would have held 2)
