"""The routing benchmarks' simulated gateway: the production router in front of engine_sim's
discrete-event simulator, seeing engines only as the real gateway does (its own in-flight
counts, metrics as scraped). Shared by ``benchmarks.routing`` and ``benchmarks.routing_churn``.
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime_components.engine_sim.config import SimRequest
from runtime_components.engine_sim.des import EngineView, RequestRecord, Simulation, Summary
from runtime_components.engine_sim.stats import EngineStats
from runtime_components.gateway.policy import EndpointState, RequestOutcome, Router, RouteRequest

__all__ = ["MODEL", "SimGateway", "engine_address", "format_table"]

MODEL = "llama-3-8b"


def engine_address(index: int) -> str:
    """The ip:port the simulated gateway knows engine ``index`` by."""
    return f"10.0.{index // 256}.{index % 256}:8000"


class SimGateway:
    """The gateway's view of the fleet inside the simulation: a router, scraped metrics, in-flight counts."""

    def __init__(self, router: Router, scrape_interval_s: float) -> None:
        self.router = router
        self.scrape_interval_s = scrape_interval_s
        self.sim: Simulation | None = None
        self._inflight: dict[int, int] = {}
        self._pending: dict[str, tuple[RouteRequest, EndpointState]] = {}
        self._settled = 0
        # engine index -> (time, stats) of the last two scrapes
        self._scrapes: dict[int, list[tuple[float, EngineStats]]] = {}

    def attach(self, sim: Simulation, last_arrival_s: float) -> None:
        """Bind to ``sim`` and schedule scrapes every interval until the last arrival."""
        self.sim = sim
        ticks = int(last_arrival_s / self.scrape_interval_s) + 1
        for k in range(ticks + 1):
            sim.call_at(k * self.scrape_interval_s, self._scrape)

    def _scrape(self, sim: Simulation, now: float) -> None:
        self._settle(sim.records)
        for view in sim.routable():
            history = self._scrapes.setdefault(view.index, [])
            history.append((now, view.stats()))
            del history[:-2]

    def _settle(self, records: Sequence[RequestRecord]) -> None:
        """Requests finished since the last look: in-flight counts drop, hooks fire."""
        for record in records[self._settled :]:
            pending = self._pending.pop(record.request_id, None)
            if pending is None:
                continue  # refused before routing (no engine)
            req, endpoint = pending
            self._inflight[record.engine or 0] -= 1
            outcome = RequestOutcome(
                success=record.error is None,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.output_tokens,
                ttft_s=record.ttft_s,
                e2e_s=record.e2e_s,
            )
            self.router.on_finished(req, endpoint, outcome)
        self._settled = len(records)

    def endpoint_state(self, view: EngineView) -> EndpointState:
        """What the gateway knows about one engine now: last scrape plus its own in-flight count."""
        history = self._scrapes.get(view.index, [])
        base = EndpointState(
            address=engine_address(view.index),
            pod=f"engine-{view.index}",
            model=MODEL,
            inflight=self._inflight.get(view.index, 0),
            max_loras=view.config.max_loras,
        )
        if not history:
            return base
        t1, s1 = history[-1]
        ttft = tpot = tps = None
        if len(history) == 2:
            t0, s0 = history[0]
            ttft = _histogram_mean_delta(s0, s1, "time_to_first_token_seconds")
            tpot = _histogram_mean_delta(s0, s1, "request_time_per_output_token_seconds")
            tokens = (s1.prompt_tokens + s1.generation_tokens) - (s0.prompt_tokens + s0.generation_tokens)
            tps = tokens / (t1 - t0) if t1 > t0 else None
        return EndpointState(
            address=base.address,
            pod=base.pod,
            model=MODEL,
            adapters=frozenset(s1.loaded_adapters),
            running=float(s1.num_running),
            waiting=float(s1.num_waiting),
            kv_cache_usage=s1.kv_cache_usage,
            ttft_s=ttft,
            tpot_s=tpot,
            throughput_tps=tps,
            inflight=base.inflight,
            max_loras=base.max_loras,
        )

    def route(self, sim_req: SimRequest, views: Sequence[EngineView]) -> int:
        """The simulator's routing callback: pick with the router, as the gateway would."""
        assert self.sim is not None, "attach() the gateway to its simulation first"
        self._settle(self.sim.records)
        endpoints = [self.endpoint_state(v) for v in views]
        req = RouteRequest(
            model=MODEL, adapter=sim_req.adapter, token_ids=sim_req.prompt_token_ids, session_id=sim_req.session_id
        )
        chosen = self.router.pick(req, endpoints)
        position = next(i for i, e in enumerate(endpoints) if e.address == chosen.address)
        self.router.on_routed(req, chosen)
        index = views[position].index
        self._inflight[index] = self._inflight.get(index, 0) + 1
        self._pending[sim_req.request_id] = (req, chosen)
        return position


def _histogram_mean_delta(before: EngineStats, after: EngineStats, name: str) -> float | None:
    h0, h1 = before.histograms.get(name), after.histograms.get(name)
    if h0 is None or h1 is None or h1.count <= h0.count:
        return None
    return (h1.total - h0.total) / (h1.count - h0.count)


def format_table(workload: str, rows: dict[str, Summary]) -> str:
    """One readable table per workload, a row per policy."""
    head = (
        f"{'policy':<20} {'TTFT mean':>9} {'P50':>7} {'P99':>7} | {'e2e mean':>8} {'P50':>7} {'P99':>7} | "
        f"{'req/s':>6} {'out tok/s':>9} {'hit':>5} {'err':>4}"
    )
    lines = [f"== {workload} (seconds of simulated time) ==", head, "-" * len(head)]
    for policy, s in rows.items():
        lines.append(
            f"{policy:<20} {s.ttft.mean:>9.3f} {s.ttft.p50:>7.3f} {s.ttft.p99:>7.3f} | "
            f"{s.e2e.mean:>8.3f} {s.e2e.p50:>7.3f} {s.e2e.p99:>7.3f} | "
            f"{s.req_per_s:>6.2f} {s.output_tok_per_s:>9.0f} {s.prefix_hit_fraction:>5.2f} {s.errors:>4}"
        )
    return "\n".join(lines)
