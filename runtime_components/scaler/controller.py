"""The scaler's control loop: scrape -> window -> decide -> write the scale subresource.

Per target, two loops run: a scrape every `scrapeIntervalSeconds` (engine pods listed by
label through the Kubernetes API and their `/metrics` summed, or the optimizer's gauge), and
a decision every `syncPeriodSeconds` (the policy's own default: HPA 15 s, KPA/APA 2 s).
A decision reads `spec.replicas` from the scale subresource, asks `Autoscaler.decide` and
patches `spec.replicas` when it differs. Holding on missing or stale metrics is logged and
reported once as a Warning Event (and once more when metrics come back). With leader
election enabled only the Lease holder decides and writes; every replica keeps scraping, so a
new leader starts with warm windows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from kubernetes import client as k8s

from aibrix_spec.components.scaler import ScalerConfig, ScalingTarget
from runtime_components.scaler.autoscaler import Autoscaler, Decision
from runtime_components.scaler.demand import DemandReading, ZeroGate, read_demand, uncovered_held
from runtime_components.scaler.freshness import FrozenDetector
from runtime_components.scaler.kube import KubeApi
from runtime_components.scaler.lease import LeaderElector
from runtime_components.scaler.own_metrics import ScalerMetrics
from runtime_components.scaler.scrape import MetricReading, read_engine_pods, read_optimizer

__all__ = ["Controller", "TargetState"]

log = logging.getLogger("aibrix.scaler")

HELD_REASONS = frozenset({"metrics-missing", "metrics-stale"})


@dataclass
class TargetState:
    """Mutable per-target bookkeeping of the controller (the policy state is in `autoscaler`)."""

    spec: ScalingTarget
    autoscaler: Autoscaler
    ready_pods: int = 0
    frozen: FrozenDetector | None = None
    holding: bool = False
    gate: ZeroGate | None = None  #: with a demand source: scale from zero and back
    demand: DemandReading | None = None
    spec_replicas: int | None = None  #: as last read from the scale subresource
    last_decision: Decision | None = None
    history: list[tuple[float, int, int, str]] = field(default_factory=list)


class Controller:
    """Drives every target of a `ScalerConfig` against one Kubernetes API."""

    def __init__(
        self,
        config: ScalerConfig,
        kube: KubeApi,
        *,
        identity: str,
        metrics: ScalerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        scrape_timeout_s: float = 2.0,
    ) -> None:
        self.config = config
        self.kube = kube
        self.metrics = metrics if metrics is not None else ScalerMetrics()
        self.clock = clock
        self.scrape_timeout_s = scrape_timeout_s
        self.elector = LeaderElector(kube, config.leader_election, identity)
        self.targets = {t.name: TargetState(spec=t, autoscaler=Autoscaler(t),
                                            frozen=FrozenDetector(t.frozen_after_seconds),
                                            gate=(ZeroGate(t.demand.scale_to_zero_grace_seconds)
                                                  if t.demand and t.min_replicas == 0 else None))
                        for t in config.targets}

    async def run(self, stop: asyncio.Event) -> None:
        """Run all loops until `stop` is set."""
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(self._election_loop(stop))]
            for state in self.targets.values():
                tasks.append(asyncio.create_task(self._scrape_loop(stop, session, state)))
                tasks.append(asyncio.create_task(self._decide_loop(stop, state)))
                if state.spec.demand is not None:
                    tasks.append(asyncio.create_task(self._demand_loop(stop, session, state)))
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def scrape_once(self, session: aiohttp.ClientSession, state: TargetState) -> MetricReading:
        """One scrape round for one target; records the total when at least one source answered."""
        spec = state.spec
        metric = spec.metric
        if metric.source == "engine":
            pods = await self.kube.list_pods(spec.scale_target_ref.namespace, spec.pod_selector)
            state.ready_pods = sum(1 for p in pods if p.ready)
            engine = metric.engine_source
            reading = await read_engine_pods(
                session, pods, names=metric.names, labels=engine.labels, default_port=engine.port,
                path=engine.path, timeout_s=self.scrape_timeout_s, frozen=state.frozen, now=self.clock(),
                engine=engine.engine,
            )
        else:
            assert metric.optimizer is not None  # guaranteed by MetricSpec's validator
            reading = await read_optimizer(
                session, url=metric.optimizer.url, names=metric.names, labels=metric.optimizer.labels,
                timeout_s=self.scrape_timeout_s,
            )
        for error in reading.errors:
            log.warning("target %s: scrape failed: %s", spec.name, error)
        if reading.errors:
            self.metrics.scrape_errors.labels(spec.name).inc(len(reading.errors))
        if reading.reporting > 0:
            total = reading.total + self._queued_demand(state)
            state.autoscaler.record(self.clock(), total, reading.reporting, expected_pods=reading.expected)
            self.metrics.metric_total.labels(spec.name).set(total)
        return reading

    def _queued_demand(self, state: TargetState) -> float:
        """Requests held at the gateway that no starting pod will absorb, in the metric's unit
        (only for metrics that count requests: running, waiting, concurrency)."""
        spec, demand = state.spec, state.demand
        if demand is None or state.spec_replicas is None or not _counts_requests(spec.metric.names):
            return 0.0
        return uncovered_held(demand.held, state.spec_replicas, state.ready_pods, spec.target)

    async def demand_once(self, session: aiohttp.ClientSession, state: TargetState) -> None:
        """Read the gateways' demand; a held request at zero replicas starts one at once."""
        spec = state.spec
        assert spec.demand is not None
        reading = await read_demand(session, spec.demand.urls, spec.demand.model, self.scrape_timeout_s)
        for error in reading.errors:
            log.warning("target %s: reading demand failed: %s", spec.name, error)
        now = self.clock()
        state.demand = reading
        self.metrics.demand.labels(spec.name).set(reading.total)
        if state.gate is None:  # minReplicas >= 1: the held requests only add to the metric
            return
        state.gate.observe(now, reading)
        if reading.held <= 0 or not self.elector.is_leader or state.spec_replicas not in (None, 0):
            return
        scale = await self.kube.get_scale(spec.scale_target_ref)
        state.spec_replicas = scale.spec_replicas
        if scale.spec_replicas == 0:  # not at the next sync: the held requests are waiting now
            await self._write(state, now, 0, Decision(desired=1, reason="woken-by-demand",
                                                      observed_total=reading.total))
            state.spec_replicas = 1

    async def decide_once(self, state: TargetState) -> Decision | None:
        """One decision for one target; None when another replica holds the Lease."""
        if not self.elector.is_leader:
            return None
        spec = state.spec
        ref = spec.scale_target_ref
        scale = await self.kube.get_scale(ref)
        ready = state.ready_pods if spec.metric.source == "engine" else scale.status_replicas
        now = self.clock()
        state.spec_replicas = scale.spec_replicas
        decision = state.autoscaler.decide(now, scale.spec_replicas, ready)
        if state.gate is not None:
            bounded, why = state.gate.bound(now, decision.desired)
            bounded = min(max(bounded, spec.min_replicas), spec.max_replicas)
            if bounded != decision.desired and why is not None:
                decision = Decision(desired=bounded, reason=why, observed_total=decision.observed_total)
        state.last_decision = decision
        state.history.append((now, scale.spec_replicas, decision.desired, decision.reason))
        del state.history[:-1000]
        self.metrics.decisions.labels(spec.name, decision.reason).inc()
        self.metrics.desired.labels(spec.name).set(decision.desired)
        self.metrics.current.labels(spec.name).set(scale.spec_replicas)
        self.metrics.ready.labels(spec.name).set(ready)
        await self._report_holding(state, decision)
        if decision.desired != scale.spec_replicas:
            await self._write(state, now, scale.spec_replicas, decision)
        return decision

    async def _write(self, state: TargetState, now: float, current: int, decision: Decision) -> None:
        spec = state.spec
        ref = spec.scale_target_ref
        try:
            await self.kube.set_replicas(ref, decision.desired)
        except (k8s.ApiException, OSError) as error:
            self.metrics.scale_writes.labels(spec.name, "error").inc()
            log.error("target %s: writing %s/%s scale to %d failed: %s",
                      spec.name, ref.kind, ref.name, decision.desired, error)
            return
        self.metrics.scale_writes.labels(spec.name, "ok").inc()
        state.autoscaler.applied(now, current, decision.desired)
        direction = "ScaledUp" if decision.desired > current else "ScaledDown"
        total = "n/a" if decision.observed_total is None else f"{decision.observed_total:.3g}"
        message = (f"{spec.policy}: {current} -> {decision.desired} replicas ({decision.reason}); "
                   f"{spec.metric.display} total {total}, target {spec.target:g} per replica")
        log.info("target %s: %s", spec.name, message)
        await self._event(state, direction, message, warning=False)

    async def _report_holding(self, state: TargetState, decision: Decision) -> None:
        if decision.reason in HELD_REASONS and not state.holding:
            state.holding = True
            message = (f"holding {decision.desired} replicas: {decision.reason} for {state.spec.metric.display} "
                       f"(stale after {state.spec.stale_after_seconds:g} s)")
            log.warning("target %s: %s", state.spec.name, message)
            await self._event(state, "MetricsUnavailable", message, warning=True)
        elif decision.reason not in HELD_REASONS and state.holding:
            state.holding = False
            log.info("target %s: metrics are back; deciding again", state.spec.name)
            await self._event(state, "MetricsRecovered", f"{state.spec.metric.display} is reported again", warning=False)

    async def _event(self, state: TargetState, reason: str, message: str, *, warning: bool) -> None:
        try:
            await self.kube.emit_event(state.spec.scale_target_ref, reason=reason, message=message, warning=warning)
        except (k8s.ApiException, OSError) as error:
            log.warning("target %s: could not record event %s: %s", state.spec.name, reason, error)

    async def _election_loop(self, stop: asyncio.Event) -> None:
        settings = self.config.leader_election
        while not stop.is_set():
            try:
                was = self.elector.is_leader
                now_leader = await self.elector.try_acquire_or_renew()
                if now_leader != was:
                    log.info("leadership %s", "acquired" if now_leader else "lost")
            except (k8s.ApiException, OSError) as error:
                log.warning("leader election round failed: %s", error)
            self.metrics.leader.set(1 if self.elector.is_leader else 0)
            if not settings.enabled:
                return
            await _sleep_or_stop(stop, settings.renew_period_seconds)

    async def _scrape_loop(self, stop: asyncio.Event, session: aiohttp.ClientSession, state: TargetState) -> None:
        while not stop.is_set():
            try:
                await self.scrape_once(session, state)
            except (TimeoutError, k8s.ApiException, OSError, aiohttp.ClientError) as error:
                log.warning("target %s: scrape round failed: %s", state.spec.name, _describe(error))
            await _sleep_or_stop(stop, state.spec.scrape_interval_seconds)

    async def _demand_loop(self, stop: asyncio.Event, session: aiohttp.ClientSession, state: TargetState) -> None:
        assert state.spec.demand is not None
        while not stop.is_set():
            try:
                await self.demand_once(session, state)
            except (TimeoutError, k8s.ApiException, OSError, aiohttp.ClientError) as error:
                log.warning("target %s: demand round failed: %s", state.spec.name, _describe(error))
            await _sleep_or_stop(stop, state.spec.demand.poll_seconds)

    async def _decide_loop(self, stop: asyncio.Event, state: TargetState) -> None:
        while not stop.is_set():
            try:
                await self.decide_once(state)
            except (TimeoutError, k8s.ApiException, OSError, aiohttp.ClientError) as error:
                log.warning("target %s: decision failed: %s", state.spec.name, _describe(error))
            await _sleep_or_stop(stop, state.spec.sync_period_seconds)


_REQUEST_COUNTS = frozenset({"vllm:num_requests_running", "vllm:num_requests_waiting",
                             "sglang:num_running_reqs", "sglang:num_queue_reqs"})


def _counts_requests(names: tuple[str, ...]) -> bool:
    return all(name in _REQUEST_COUNTS for name in names)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def _describe(error: BaseException) -> str:
    if isinstance(error, k8s.ApiException):
        return f"Kubernetes API answered {error.status} {error.reason}: {(error.body or '')[:200]}"
    return f"{type(error).__name__}: {error}"
