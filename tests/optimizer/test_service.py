"""The service against a fake gateway over real HTTP: rates -> plan -> desired-replica gauges."""

from __future__ import annotations

import asyncio
import json

from aiohttp import ClientSession, web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runtime_components.optimizer.service import DESIRED_REPLICAS, OptimizerService, build_app
from tests.optimizer.samples import config, profiles_by_pool

COUNTER = "aibrix_gateway_request_token_buckets_total"


def gauges(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["model"], s.labels["pool"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == DESIRED_REPLICAS
    }


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def test_service_scrapes_gateway_and_serves_desired_replicas():
    async def scenario() -> None:
        # The fake gateway's counter grows by 6 chat requests (<=256 in, <=64 out) and one long
        # one (<=2048 in) per 0.1 s of simulated time each time it is scraped.
        scrapes = {"n": 0}

        async def metrics(_: web.Request) -> web.Response:
            scrapes["n"] += 1
            n = scrapes["n"]
            body = (f'{COUNTER}{{model="chat",input_bucket="256",output_bucket="64"}} {6.0 * n}\n'
                    f'{COUNTER}{{model="chat",input_bucket="2048",output_bucket="64"}} {1.0 * n}\n')
            return web.Response(text=body)

        gateway_app = web.Application()
        gateway_app.router.add_get("/metrics", metrics)
        gateway, gateway_port = await _serve(gateway_app)
        ticks = iter(range(10_000))
        cfg = config(workload={"gatewayMetricsUrls": [f"http://127.0.0.1:{gateway_port}/metrics"],
                               "windowSeconds": 60}, intervalSeconds=0.05)
        # One scrape per simulated second, so the rates are 6 and 1 req/s whatever the real pace.
        service = OptimizerService(cfg, profiles_by_pool(), clock=lambda: float(next(ticks)))
        runner, port = await _serve(build_app(service))
        try:
            async with ClientSession() as session:
                text = ""
                for _ in range(200):  # bounded wait: up to ~10 s for the first plan
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                        text = await response.text()
                    if gauges(text):
                        break
                    await asyncio.sleep(0.05)
                assert gauges(text) == {("chat", "a10"): 1.0, ("chat", "l20"): 1.0}
                assert "aibrix_optimizer_plan_cost_per_hour 1.85" in text
                assert "aibrix_optimizer_plan_feasible 1.0" in text
                async with session.get(f"http://127.0.0.1:{port}/plan") as response:
                    snapshot = json.loads(await response.text())
                assert snapshot["lastError"] is None
                rates = {(c["inputBucket"], c["rps"]) for c in snapshot["workload"]}
                assert rates == {(256, 6.0), (2048, 1.0)}
        finally:
            await runner.cleanup()
            await gateway.cleanup()

    asyncio.run(scenario())


def test_round_results_and_last_plan_kept_when_infeasible():
    async def scenario() -> None:
        cfg = config(workload={"gatewayMetricsUrls": ["http://gw-a/metrics", "http://gw-b/metrics"]},
                     pools=[{"name": "a10", "accelerator": "nvidia-a10", "costPerGpuHour": 0.75, "maxGpus": 2},
                            {"name": "l20", "accelerator": "nvidia-l20", "costPerGpuHour": 1.1, "maxGpus": 1}])
        clock = iter([0.0, 10.0, 20.0, 30.0])
        service = OptimizerService(cfg, profiles_by_pool(), clock=lambda: next(clock))
        load = {"rps": 2.0, "t": 0.0}

        async def fetch(url: str) -> str:
            if url.endswith("gw-b/metrics"):
                raise ConnectionError("gateway b is down")  # one dead gateway is skipped
            return f'{COUNTER}{{model="chat",input_bucket="256",output_bucket="64"}} {load["rps"] * load["t"]}\n'

        assert await service.solve_once(fetch) == "no_data"
        load["t"] = 10.0
        assert await service.solve_once(fetch) == "ok"
        first = service.plan
        assert first is not None and first.cost_per_hour == 0.75
        # 40 req/s more than the caps allow: infeasible, the last plan stays published.
        load.update(rps=40.0, t=20.0)
        assert await service.solve_once(fetch) == "infeasible"
        assert service.plan is first
        assert "maxGpus" in (service.last_error or "")
        text = generate_latest(service.registry).decode()
        assert 'aibrix_optimizer_rounds_total{result="infeasible"} 1.0' in text
        assert "aibrix_optimizer_plan_feasible 0.0" in text
        assert gauges(text) == {("chat", "a10"): 1.0, ("chat", "l20"): 0.0}

    asyncio.run(scenario())


def test_profiles_load_in_the_first_round_and_errors_are_retried():
    async def scenario() -> None:
        attempts = {"n": 0}

        def load():  # type: ignore[no-untyped-def]
            attempts["n"] += 1
            if attempts["n"] == 1:
                from runtime_components.optimizer.errors import InputFileError

                raise InputFileError("profiles/a10.json", "file not found")
            return profiles_by_pool()

        clock = iter([0.0, 10.0, 20.0])
        service = OptimizerService(config(workload={"gatewayMetricsUrls": ["http://gw/metrics"]}), load,
                                   clock=lambda: next(clock))

        async def fetch(url: str) -> str:
            return f'{COUNTER}{{model="chat",input_bucket="256",output_bucket="64"}} 5.0\n'

        assert await service.solve_once(fetch) == "error"
        assert service.last_error == "loading profiles: profiles/a10.json: file not found"
        assert await service.solve_once(fetch) == "no_data"  # profiles loaded; first scrape only
        assert await service.solve_once(fetch) == "ok"
        assert attempts["n"] == 2

    asyncio.run(scenario())
