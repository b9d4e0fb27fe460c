"""The optimizer service: observe the workload, re-solve on an interval, serve the plan.

Each round (every ``intervalSeconds``):

1. observe: scrape every gateway's ``/metrics`` and update its ``RateWindow`` (or re-read
   the workload file, which a mounted ConfigMap may have changed);
2. solve the ILP in a worker thread (CBC runs a subprocess, HiGHS holds the GIL briefly);
3. publish ``aibrix_optimizer_desired_replicas{model, pool}`` (a total per pool, not per
   pod: the scaler divides nothing) and the plan's cost.

Profiles are loaded (and missing ones derived) in the first round, in a worker thread, so
``/healthz`` answers while derivation takes minutes. Failures never erase a plan: when a round
has no rates yet, is infeasible or errors, the gauges keep the last plan (the scaler holds its
decision too) and ``/plan`` shows why.
Endpoints: ``/metrics`` (Prometheus), ``/plan`` (JSON: plan, last error, workload),
``/healthz``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from aibrix_spec.components.optimizer import GpuProfile, OptimizerConfig
from runtime_components.optimizer.errors import InfeasibleError, OptimizerError
from runtime_components.optimizer.report import plan_to_json
from runtime_components.optimizer.solve import Plan, plan_from_config
from runtime_components.optimizer.workload import RateWindow, Workload, load_workload, merge, parse_gateway_counters

__all__ = ["OptimizerService", "build_app", "run_service", "DESIRED_REPLICAS"]

DESIRED_REPLICAS = "aibrix_optimizer_desired_replicas"
log = logging.getLogger("aibrix.optimizer")


class OptimizerService:
    """Holds the windows, the last plan and the metrics; ``solve_once`` runs one round."""

    def __init__(
        self,
        config: OptimizerConfig,
        profiles: dict[tuple[str, str], GpuProfile] | Callable[[], dict[tuple[str, str], GpuProfile]],
        *,
        workload_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        # A callable loads (and derives) profiles on the first round, in a worker thread, so the
        # HTTP server answers /healthz during minutes of derivation instead of failing probes.
        self._load_profiles = profiles if callable(profiles) else None
        self.profiles: dict[tuple[str, str], GpuProfile] | None = None if callable(profiles) else profiles
        self.workload_file = workload_file
        self.clock = clock
        self.windows = {url: RateWindow(config.workload.window_seconds) for url in config.workload.gateway_metrics_urls}
        self.plan: Plan | None = None
        self.last_error: str | None = None
        self.workload: Workload = {}
        self.registry = CollectorRegistry()
        self.desired = Gauge(DESIRED_REPLICAS, "Replicas the optimizer wants per model and pool (a total).",
                             ["model", "pool"], registry=self.registry)
        self.cost = Gauge("aibrix_optimizer_plan_cost_per_hour", "Cost of the current plan, USD per hour.",
                          registry=self.registry)
        self.feasible = Gauge("aibrix_optimizer_plan_feasible", "1 when the last round found a plan, else 0.",
                              registry=self.registry)
        self.solve_seconds = Gauge("aibrix_optimizer_solve_seconds", "Wall time of the last solve.",
                                   registry=self.registry)
        self.workload_rps = Gauge("aibrix_optimizer_workload_rps", "Observed request rate per model.", ["model"],
                                  registry=self.registry)
        self.rounds = Counter("aibrix_optimizer_rounds", "Optimizer rounds by result.", ["result"],
                              registry=self.registry)

    async def observe(self, fetch: Callable[[str], Awaitable[str]]) -> Workload | None:
        """Current rates, or None when no source has two snapshots yet."""
        if self.workload_file is not None:
            return await asyncio.to_thread(load_workload, self.workload_file)
        now = self.clock()
        for url, window in self.windows.items():
            try:
                text = await fetch(url)
            except Exception as exc:  # one unreachable gateway must not stop the others
                log.warning("scrape of %s failed: %s", url, exc)
                continue
            window.observe(now, parse_gateway_counters(text))
        rates = [r for r in (w.rates() for w in self.windows.values()) if r is not None]
        return merge(rates) if rates else None

    async def solve_once(self, fetch: Callable[[str], Awaitable[str]]) -> str:
        """One round; returns its result label (ok, no_data, infeasible, error)."""
        if self.profiles is None and self._load_profiles is not None:
            try:
                self.profiles = await asyncio.to_thread(self._load_profiles)
            except OptimizerError as exc:
                return self._fail("error", f"loading profiles: {exc}")
        try:
            workload = await self.observe(fetch)
        except OptimizerError as exc:
            return self._fail("error", str(exc))
        if workload is None:
            self.rounds.labels("no_data").inc()
            self.last_error = "waiting for a second scrape of the gateway counters"
            return "no_data"
        self.workload = workload
        per_model: dict[str, float] = {}
        for (model, _, _), rate in workload.items():
            per_model[model] = per_model.get(model, 0.0) + rate
        for model in self.config.models:
            self.workload_rps.labels(model.name).set(per_model.get(model.name, 0.0))
        try:
            assert self.profiles is not None
            plan = await asyncio.to_thread(plan_from_config, self.config, self.profiles, workload)
        except InfeasibleError as exc:
            return self._fail("infeasible", str(exc))
        except OptimizerError as exc:
            return self._fail("error", str(exc))
        self.plan = plan
        self.last_error = None
        for p in plan.pools:
            self.desired.labels(p.model, p.pool).set(p.replicas)
        self.cost.set(plan.cost_per_hour)
        self.solve_seconds.set(plan.solve_seconds)
        self.feasible.set(1)
        self.rounds.labels("ok").inc()
        return "ok"

    def _fail(self, result: str, message: str) -> str:
        log.error("optimizer round %s: %s", result, message)
        self.last_error = message
        self.feasible.set(0)
        self.rounds.labels(result).inc()
        return result

    def snapshot(self) -> dict[str, Any]:
        return {
            "plan": plan_to_json(self.plan) if self.plan else None,
            "lastError": self.last_error,
            "workload": [
                {"model": m, "inputBucket": i, "outputBucket": o, "rps": round(r, 6)}
                for (m, i, o), r in sorted(self.workload.items())
            ],
        }


def build_app(service: OptimizerService) -> web.Application:
    """The HTTP app; its startup hook runs the re-solve loop until cleanup."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(service.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def plan(_: web.Request) -> web.Response:
        return web.json_response(service.snapshot())

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def loop_context(app: web.Application):  # type: ignore[no-untyped-def]
        session = ClientSession(timeout=ClientTimeout(total=5))

        async def fetch(url: str) -> str:
            async with session.get(url) as response:
                response.raise_for_status()
                return await response.text()

        async def loop() -> None:
            while True:
                await service.solve_once(fetch)
                await asyncio.sleep(service.config.interval_seconds)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await session.close()

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/plan", plan)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(loop_context)
    return app


def run_service(config_path: str, *, host: str, port: int) -> int:
    """``aibrix-optimize serve``: load the config (errors exit now), serve, and load or derive
    profiles in the first round (a bad profile file is then reported on /plan and retried)."""
    from runtime_components.optimizer.config import load_config, load_profiles_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loaded = load_config(config_path)
    workload_file = loaded.path(loaded.config.workload.file) if loaded.config.workload.file else None
    service = OptimizerService(loaded.config, lambda: load_profiles_for(loaded, on_derive=log.info), workload_file=workload_file)
    web.run_app(build_app(service), host=host, port=port, access_log=None,
                print=lambda message: log.info("%s", message))
    return 0
