"""Flow control at the gateway, with and without, on engine_sim's discrete-event engine model.

    python -m benchmarks.flow_control --quick

The gateway side is the shipped code's pure parts: ``flow.queue.ModelQueue`` (priority bands,
the configured fairness between users, arrival order) and ``flow.saturation.SaturationDetector``
(slots per engine from the last scrape plus the gateway's own in-flight count). Engines are
``Simulation`` engines (vLLM-style, llama-3-8b on nvidia-a10). Arrivals are events; a held
request is handed to an engine with ``Simulation.submit(..., engine=i)`` and keeps its arrival
time, so the time it was held counts in its TTFT. The dispatcher runs on every arrival and
every ``tick_s`` (the gateway's tick) and when a request finishes (the controller's ``wake``,
at the engine step that ends it). Each user's in-flight count decides whether it is under
its fair share (``saturation.under_share``): over it, it sees the waiting budget less
``underShareReserve``, as the controller does; under it, it is offered only the engines it sent
the fewest prompt tokens to lately (``flow.prefill.RecentPrefill``), as the controller does.
Engine metrics are sampled every ``scrape_s`` (the gateway's scrape lag); the in-flight count
is exact.

Workloads (seeded Poisson arrivals, 512-token prompts, 128 output tokens). The noisy-neighbour
workload runs on ``SEEDS`` consecutive seeds and their requests are pooled for every P99 and
count (``victim_p99_ttft_ratio_vs_solo_by_seed`` keeps each seed's ratio):

1. noisy neighbour: tenant A at 10x tenant B's rate, together 1.5x what the fleet sustains
   (measured in the same run by a saturating burst), plus a low-rate tenant C in a higher
   priority band. B's P99 TTFT is compared with B alone on the same fleet (solo), with flow
   control and without (requests go straight to the least-loaded engine, as today).
2. scale from zero: no engine at first; two bursts of requests 90 s apart. The first request
   of a burst that finds no engine starts one at once (the gateway wakes the scaler); it is
   ready after a cold start; after ``idle_grace_s`` without demand it is removed. With flow
   control requests are held until it is ready; without, they are answered 503 meanwhile
   (today's ``no_ready_endpoint``).

With flow control the engines run vLLM's priority scheduling and every request carries the
priority the gateway gives it (``gateway.flowControl.enginePriority``, on by default: higher
tiers first, then users under their fair share), as compiled stacks ship it; the row "engines
fcfs" is the same gateway without it.

RESULT: ``victim_p99_ttft_ratio_vs_solo`` (with flow control at the shipped defaults;
target <= 2), ``victim_p99_ttft_ratio_vs_solo_engines_fcfs`` and
``heavy_throughput_ratio_vs_engines_fcfs`` (the same without engine priorities),
``victim_p99_ttft_ratio_vs_solo_no_reserve`` (without the fair-share reserve nor engine
priorities: the behaviour before both), ``heavy_throughput_ratio_vs_no_reserve`` and
``heavy_throughput_ratio_vs_without_flow_control`` (tenant A's completed requests),
``heavy_p99_ttft_s`` / ``_no_reserve`` / ``_without_flow_control``,
``victim_p99_ttft_ratio_vs_solo_max_reserve`` and ``heavy_throughput_ratio_max_reserve_vs_no_reserve``
(the largest reserve allowed, budget - 1), ``victim_p99_ttft_ratio_vs_solo_tight`` (waiting 1, KV 0.8: less queued inside
the engines, less throughput),
``victim_p99_ttft_ratio_vs_solo_without_flow_control``, ``scale_from_zero_success_rate``
(target 1.0), ``requests_lost`` (requests neither completed nor refused with a status,
with flow control; target 0), ``priority_inversions`` (a request dispatched while one of a
higher band was held; target 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from aibrix_spec.components.gateway import FlowControlConfig, SaturationSpec
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import RequestRecord, Simulation, percentile
from runtime_components.engine_sim.perf import DEFAULT_EFFICIENCY
from runtime_components.gateway.flow.controller import engine_priority
from runtime_components.gateway.flow.fairness import Held
from runtime_components.gateway.flow.prefill import RecentPrefill
from runtime_components.gateway.flow.queue import ModelQueue
from runtime_components.gateway.flow.saturation import SaturationDetector
from runtime_components.gateway.policy.types import EndpointState

ENGINE = EngineConfig(accelerator="nvidia-a10", model_arch="llama-3-8b")
PROMPT_TOKENS = 512
OUTPUT_TOKENS = 128
TARGET_RATIO = 2.0
SEEDS = 3  #: the noisy-neighbour workload runs on this many seeds, pooled (a P99 of ~110 requests is their 2nd slowest)


@dataclass(frozen=True)
class Tenant:
    name: str
    rate: float  #: requests per second
    priority: int


@dataclass
class Outcome:
    """What one run produced: engine records plus the gateway's own refusals."""

    records: list[RequestRecord]
    refused: dict[str, int]  # request id -> HTTP status (429, 503)
    tenant_of: dict[str, str]
    submitted: int
    inversions: int = 0
    engines_started: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time, active engines)


class Gateway:
    """The gateway in front of a ``Simulation``: flow control on or off, optional scale from zero."""

    def __init__(self, sim: Simulation, config: FlowControlConfig, *, priorities: dict[str, int],
                 scrape_s: float = 0.5, cold_start_s: float | None = None, idle_grace_s: float = 30.0,
                 engine_priority: bool = False) -> None:
        self.sim = sim
        self.config = config
        self.engine_priority = engine_priority and config.enabled
        self.priorities = priorities
        self.scrape_s = scrape_s
        self.cold_start_s = cold_start_s
        self.idle_grace_s = idle_grace_s
        self.queue = ModelQueue(config.fairness)
        self.detector = SaturationDetector(config.saturation)
        self.prefill = RecentPrefill()  # as the controller: a light user goes where least is prefilling
        self.samples: dict[int, tuple[int, int, float]] = {}  # engine -> (running, waiting, kv) at the last scrape
        self.refused: dict[str, int] = {}
        self.tenant_of: dict[str, str] = {}
        self.held_at: dict[str, float] = {}
        self.sent_at: dict[str, float] = {}  # request id -> when it left the gateway
        self.inversions = 0
        self.engines_started = 0
        self.last_demand_s = 0.0
        self.timeline: list[tuple[float, int]] = []
        self._pending: list[tuple[float, int]] = []  # (lands at, engine): granted, not yet in the engine's queue
        self._ticking = False
        self._sent_by: dict[str, int] = {}  # tenant -> requests sent
        self._done_by: dict[str, int] = {}  # tenant -> of those, finished (read from the records)
        self._records_seen = 0
        sim.call_at(0.0, self._scrape)
        if config.enabled:
            sim.on_finished = self._on_finished  # the controller's wake when a request ends

    # -- events ------------------------------------------------------------------------------
    def arrive(self, req: SimRequest, tenant: str) -> None:
        self.tenant_of[req.request_id] = tenant
        self.sim.call_at(req.arrival_s, lambda sim, now: self._on_arrival(req, tenant, now))

    def _on_arrival(self, req: SimRequest, tenant: str, now: float) -> None:
        self.last_demand_s = now
        if self.cold_start_s is not None and self.sim.active_engine_count() == 0:
            self._start_engine(now)
        if not self.config.enabled:
            ready = self.sim.routable()
            if not ready:
                self.refused[req.request_id] = 503  # no_ready_endpoint
                return
            target = min(ready, key=lambda v: (v.num_running + v.num_waiting, v.index))
            self._send(req, target.index, now)
            return
        if not len(self.queue):
            room = self._room(now, tenant)
            if room:
                self._send(req, room[0], now)
                return
        if len(self.queue) >= self.config.max_queue_per_model:
            lowest = self.queue.lowest()
            priority = self.priorities[tenant]
            if lowest is None or lowest.priority >= priority:
                self.refused[req.request_id] = 429
                return
            self.queue.remove(lowest)
            self.refused[lowest.payload.request_id] = 429  # type: ignore[attr-defined]
        item = Held(flow=tenant, priority=self.priorities[tenant], cost=len(req.prompt_token_ids) + req.max_tokens,
                    seq=self.queue.next_seq(), payload=req)
        self.queue.push(item)
        self.held_at[req.request_id] = now
        self._dispatch(now)  # the controller's dispatcher wakes on an arrival
        if len(self.queue):
            self._ensure_ticking(now)

    def _on_finished(self, sim: Simulation, now: float) -> None:
        if len(self.queue):
            self._dispatch(now)

    def _ensure_ticking(self, now: float) -> None:
        if not self._ticking:
            self._ticking = True
            self.sim.call_at(now + self.config.tick_s, self._tick)

    def _tick(self, sim: Simulation, now: float) -> None:
        self._expire(now)
        self._dispatch(now)
        if len(self.queue):
            sim.call_at(now + self.config.tick_s, self._tick)
        else:
            self._ticking = False

    def _dispatch(self, now: float) -> None:
        """As ``FlowController.dispatch_now``: the next request in order, while its user has room."""
        while len(self.queue):
            item = self.queue.peek()
            depth = self.queue.depth()
            top = max(p for p, n in depth.items() if n)
            room = self._room(now, item.flow)
            if room:
                self.queue.pop()
            else:  # a heavy head without room: a light user's request of the same band may pass it
                found = None if self._under_share(item.flow) is not False else self.queue.first_of(
                    lambda flow: self._under_share(flow) is True)
                room = self._room(now, found.flow) if found is not None else []
                if found is None or not room:
                    return
                item = found
                self.queue.take(item)
            if item.priority < top:
                self.inversions += 1
            req: SimRequest = item.payload  # type: ignore[assignment]
            self.held_at.pop(req.request_id, None)
            self._send(req, room[0], now)

    def _expire(self, now: float) -> None:
        timeout = self.config.queue_timeout_s
        for request_id, since in list(self.held_at.items()):
            if now - since < timeout:
                continue
            # The queue does not index by id: rebuild it without the expired request.
            kept: list[Held] = []
            while len(self.queue):
                kept.append(self.queue.pop())
            for item in kept:
                if item.payload.request_id == request_id:  # type: ignore[attr-defined]
                    self.refused[request_id] = 503 if not self.sim.routable() else 429
                else:
                    self.queue.push(item)
            del self.held_at[request_id]

    def _scrape(self, sim: Simulation, now: float) -> None:
        self.samples = {v.index: (v.num_running, v.num_waiting, v.kv_cache_usage) for v in sim.routable()}
        self.timeline.append((now, sim.active_engine_count()))
        if (self.cold_start_s is not None and sim.active_engine_count() and not len(self.queue)
                and now - self.last_demand_s >= self.idle_grace_s
                and all(v.num_running + v.num_waiting == 0 for v in sim.routable())):
            for view in sim.routable():
                sim.remove_engine(now, view.index)  # idle for the grace: back to zero
        sim.call_at(now + self.scrape_s, self._scrape)

    # -- helpers -----------------------------------------------------------------------------
    def _start_engine(self, now: float) -> None:
        assert self.cold_start_s is not None
        engine = dataclasses.replace(ENGINE, scheduling_policy="priority") if self.engine_priority else ENGINE
        self.sim.add_engine(now, engine, ready_after_s=self.cold_start_s)
        self.engines_started += 1

    def _under_share(self, tenant: str) -> bool | None:
        records = self.sim.records
        while self._records_seen < len(records):
            done = self.tenant_of.get(records[self._records_seen].request_id, "")
            self._done_by[done] = self._done_by.get(done, 0) + 1
            self._records_seen += 1
        inflight = {t: n - self._done_by.get(t, 0) for t, n in self._sent_by.items()}
        active = {t for t, n in inflight.items() if n > 0} | self.queue.flows() | {tenant}
        return self.detector.share(inflight.get(tenant, 0), sum(inflight.values()), len(active))

    def _room(self, now: float, tenant: str) -> list[int]:
        """Engines with a free slot for ``tenant``, least loaded first (pending grants counted);
        for a light user only those prefilling least (``FlowController``'s ``_for``)."""
        light = self._under_share(tenant)
        self._pending = [(t, i) for t, i in self._pending if t > now]
        pending: dict[int, int] = {}
        for _, index in self._pending:
            pending[index] = pending.get(index, 0) + 1
        room = []
        index_of: dict[str, int] = {}
        for view in self.sim.routable():
            sample = self.samples.get(view.index)
            inflight = view.num_running + view.num_waiting + pending.get(view.index, 0)
            state = EndpointState(address=_address(view.index),
                                  running=sample[0] if sample else None, waiting=sample[1] if sample else None,
                                  kv_cache_usage=sample[2] if sample else None, inflight=inflight)
            if self.detector.slots(state, under_share=light) > 0:
                room.append(state)
                index_of[state.address] = view.index
        if light is True:
            room = self.prefill.lightest(room, now)
        return [index_of[state.address] for state in sorted(room, key=lambda e: (e.inflight, index_of[e.address]))]

    def _send(self, req: SimRequest, engine: int, now: float) -> None:
        self.sent_at[req.request_id] = now
        tenant = self.tenant_of[req.request_id]
        self._sent_by[tenant] = self._sent_by.get(tenant, 0) + 1
        if self.engine_priority:  # as GatewayCore.admit: this request counted, then its share decides
            req = dataclasses.replace(req, priority=engine_priority(self.priorities[tenant], self._under_share(tenant)))
        lands = now + DEFAULT_EFFICIENCY.request_overhead_s  # the API path, as Simulation adds it to routed requests
        if self.config.enabled:
            self.prefill.add(_address(engine), len(req.prompt_token_ids), now)
        self._pending.append((lands, engine))
        self.sim.submit(lands, req, engine=engine)


def _address(index: int) -> str:
    return f"10.0.0.{index + 1}:8000"


def _request(rid: str, at: float, rng: random.Random) -> SimRequest:
    """Prompt and output lengths vary around the means (fixed lengths would make requests that
    start together finish together, a synchronisation real traffic does not have)."""
    prompt = rng.randint(PROMPT_TOKENS // 2, PROMPT_TOKENS * 3 // 2)
    output = rng.randint(OUTPUT_TOKENS // 4, OUTPUT_TOKENS * 7 // 4)
    return SimRequest(rid, [rng.randrange(1, 30000) for _ in range(prompt)], output, at)


def poisson(tenants: list[Tenant], duration_s: float, seed: int) -> list[tuple[SimRequest, str]]:
    """Each tenant's arrivals from its own seeded stream, so B's requests are the same in every run."""
    out = []
    for tenant in tenants:
        rng = random.Random(f"{seed}-{tenant.name}")
        t = rng.expovariate(tenant.rate)
        k = 0
        while t < duration_s:
            out.append((_request(f"{tenant.name}-{k}", t, rng), tenant.name))
            k += 1
            t += rng.expovariate(tenant.rate)
    return sorted(out, key=lambda pair: pair[0].arrival_s)


def run(engines: int, workload: list[tuple[SimRequest, str]], config: FlowControlConfig, priorities: dict[str, int],
        *, cold_start_s: float | None = None, idle_grace_s: float = 30.0, engine_priority: bool = True) -> Outcome:
    """One workload through the gateway model. ``engine_priority`` (with flow control on): the
    engines run vLLM's priority scheduling and each request carries the gateway's priority, as
    the compiler ships it (``gateway.flowControl.enginePriority``)."""
    engine = dataclasses.replace(ENGINE, scheduling_policy="priority") if engine_priority and config.enabled else ENGINE
    sim = Simulation([engine] * engines, route=lambda req, views: 0)
    gateway = Gateway(sim, config, priorities=priorities, cold_start_s=cold_start_s, idle_grace_s=idle_grace_s,
                      engine_priority=engine_priority)
    for req, tenant in workload:
        gateway.arrive(req, tenant)
    end = max(req.arrival_s for req, _ in workload) + config.queue_timeout_s + 300.0
    records = sim.run([], until_s=end)
    return Outcome(records, gateway.refused, gateway.tenant_of, len(workload), gateway.inversions,
                   gateway.engines_started, gateway.timeline)


def capacity_rps(engines: int, seed: int, duration_s: float = 60.0) -> float:
    """The highest Poisson rate the fleet sustains (measured, not assumed): bisection on the rate;
    a rate is sustained when its backlog drains within 10 s of the last arrival."""
    lo, hi = 0.5, 64.0
    for _ in range(7):
        rate = (lo + hi) / 2
        load = poisson([Tenant("cap", rate, 0)], duration_s, seed)
        outcome = run(engines, load, FlowControlConfig(enabled=False), {"cap": 0})
        last = max(r.finish_s for r in outcome.records if r.finish_s is not None)
        lo, hi = (rate, hi) if last <= duration_s + 10.0 else (lo, rate)
    return lo


def p99_ttft(outcome: Outcome, tenant: str) -> float:
    values = [r.ttft_s for r in outcome.records if outcome.tenant_of.get(r.request_id) == tenant and r.ttft_s is not None]
    return percentile(values, 99) if values else float("nan")


def lost(outcome: Outcome) -> int:
    """Requests with neither a completed record nor a refusal status."""
    done = {r.request_id for r in outcome.records if r.error is None and r.finish_s is not None}
    return outcome.submitted - len(done) - len(set(outcome.refused) - done)


def completed(outcome: Outcome, tenant: str | None = None) -> int:
    return sum(1 for r in outcome.records if r.error is None and r.finish_s is not None
               and (tenant is None or outcome.tenant_of.get(r.request_id) == tenant))


def merge(outcomes: Sequence[Outcome]) -> Outcome:
    """Several runs as one sample (request ids prefixed by the run's position, so they stay apart)."""
    records: list[RequestRecord] = []
    refused: dict[str, int] = {}
    tenant_of: dict[str, str] = {}
    for i, outcome in enumerate(outcomes):
        records += [dataclasses.replace(r, request_id=f"{i}/{r.request_id}") for r in outcome.records]
        refused.update({f"{i}/{rid}": status for rid, status in outcome.refused.items()})
        tenant_of.update({f"{i}/{rid}": tenant for rid, tenant in outcome.tenant_of.items()})
    return Outcome(records, refused, tenant_of, sum(o.submitted for o in outcomes),
                   sum(o.inversions for o in outcomes), sum(o.engines_started for o in outcomes))


@dataclass
class NoisyNeighbour:
    """One seed of the noisy-neighbour workload: its measured capacity, tenants and runs."""

    seed: int
    capacity_rps: float
    tenants: tuple[Tenant, Tenant, Tenant]
    runs: dict[str, Outcome]


def noisy_neighbour(engines: int, seed: int, duration: float, configs: dict[str, FlowControlConfig]) -> NoisyNeighbour:
    """Tenant A at 10x tenant B, 1.5x the fleet's capacity in all, plus C in a higher band; B also alone."""
    cap = capacity_rps(engines, seed + 1)
    total = 1.5 * cap
    a, b, c = Tenant("A", total * 10 / 11, 0), Tenant("B", total / 11, 0), Tenant("C", max(0.2, total / 50), 10)
    priorities = {t.name: t.priority for t in (a, b, c)}
    mixed_load = poisson([a, b, c], duration, seed)
    runs = {"solo": run(engines, poisson([b], duration, seed), configs["off"], priorities),
            "with_fc": run(engines, mixed_load, configs["flow"], priorities),
            "fifo_engines": run(engines, mixed_load, configs["flow"], priorities, engine_priority=False),
            "no_reserve": run(engines, mixed_load, configs["no_reserve"], priorities, engine_priority=False),
            "most": run(engines, mixed_load, configs["most"], priorities),
            "tight": run(engines, mixed_load, configs["tight"], priorities),
            "without_fc": run(engines, mixed_load, configs["off"], priorities)}
    return NoisyNeighbour(seed, cap, (a, b, c), runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flow_control", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter workloads (about a minute in all)")
    parser.add_argument("--seed", type=int, default=11, help=f"the first of {SEEDS} seeds (consecutive)")
    parser.add_argument("--fairness", choices=["virtual-time", "round-robin"], default="virtual-time")
    args = parser.parse_args(argv)
    engines = 2
    duration = 60.0 if args.quick else 240.0
    # The shipped saturation defaults, and a tighter setting (less queued inside engines, less throughput).
    flow = FlowControlConfig(enabled=True, queue_timeout_s=30.0, max_queue_per_model=1000, fairness=args.fairness)
    no_reserve = FlowControlConfig(enabled=True, queue_timeout_s=30.0, max_queue_per_model=1000,
                                   fairness=args.fairness, saturation=SaturationSpec(under_share_reserve=0))
    most = FlowControlConfig(enabled=True, queue_timeout_s=30.0, max_queue_per_model=1000, fairness=args.fairness,
                             saturation=SaturationSpec(under_share_reserve=flow.saturation.max_waiting_per_engine - 1))
    tight = FlowControlConfig(enabled=True, queue_timeout_s=30.0, max_queue_per_model=1000, fairness=args.fairness,
                              saturation=SaturationSpec(max_waiting_per_engine=1, max_kv_cache_usage=0.8,
                                                        under_share_reserve=0))
    off = FlowControlConfig(enabled=False)
    configs = {"flow": flow, "no_reserve": no_reserve, "most": most, "tight": tight, "off": off}
    seeds = [args.seed + k for k in range(SEEDS)]
    per_seed = [noisy_neighbour(engines, seed, duration, configs) for seed in seeds]
    pooled = {name: merge([n.runs[name] for n in per_seed]) for name in per_seed[0].runs}
    solo, with_fc, fifo_engines = pooled["solo"], pooled["with_fc"], pooled["fifo_engines"]
    with_no_reserve, with_most, with_tight, without_fc = (
        pooled["no_reserve"], pooled["most"], pooled["tight"], pooled["without_fc"])
    print(f"flow_control: {ENGINE.model_arch} on {ENGINE.accelerator} x{engines}, capacity "
          f"{', '.join(f'{n.capacity_rps:.2f}' for n in per_seed)} req/s (measured, seeds {', '.join(map(str, seeds))}), "
          f"prompt {PROMPT_TOKENS} / output {OUTPUT_TOKENS} tokens, fairness {args.fairness}, "
          f"saturation waiting>={flow.saturation.max_waiting_per_engine} or KV>={flow.saturation.max_kv_cache_usage}, "
          f"under-share reserve {flow.saturation.reserve}, "
          f"queueTimeout {flow.queue_timeout_s:g} s, {duration:g} s per workload and seed\n")
    solo_p99 = p99_ttft(solo, "B")
    a, b, c = per_seed[0].tenants
    load = (a.rate + b.rate + c.rate) / per_seed[0].capacity_rps
    print(f"noisy neighbour (seed {seeds[0]}): A {a.rate:.2f} req/s, B {b.rate:.2f} req/s, C {c.rate:.2f} req/s "
          f"(priority 10); total {load:.1f}x capacity. Requests of the {SEEDS} seeds pooled:")
    print(f"{'run':28} {'B p99 TTFT s':>13} {'vs solo':>8} {'C p99 TTFT s':>13} {'A p99 TTFT s':>13} "
          f"{'A done':>7} {'A 429':>6} "
          f"{'B done':>7} {'lost':>5} {'done/trace s':>12}")
    rows = [("B alone (solo)", solo), ("A+B+C with flow control", with_fc),
            ("  engines fcfs (before)", fifo_engines),
            ("  no reserve, engines fcfs", with_no_reserve),
            (f"  reserve {most.saturation.reserve} of {most.saturation.max_waiting_per_engine}", with_most),
            ("  tight (waiting 1, KV 0.8)", with_tight), ("A+B+C without flow control", without_fc)]
    for label, outcome in rows:
        b_p99 = p99_ttft(outcome, "B")
        a_refused = sum(1 for rid, s in outcome.refused.items() if outcome.tenant_of.get(rid) == "A" and s == 429)
        c_p99 = p99_ttft(outcome, "C")
        print(f"{label:28} {b_p99:13.3f} {b_p99 / solo_p99:8.2f} {c_p99:13.3f} {p99_ttft(outcome, 'A'):13.3f} "
              f"{completed(outcome, 'A'):7d} "
              f"{a_refused:6d} {completed(outcome, 'B'):7d} {lost(outcome):5d} "
              f"{completed(outcome) / duration / SEEDS:12.2f}")
    by_seed = {str(n.seed): round(p99_ttft(n.runs["with_fc"], "B") / p99_ttft(n.runs["solo"], "B"), 3) for n in per_seed}
    print(f"B's P99 TTFT vs solo with flow control, seed by seed: {by_seed}")
    priorities = {t.name: t.priority for t in per_seed[0].tenants}

    # Scale from zero: two bursts 90 s apart; 5 s cold start.
    zrng = random.Random(args.seed + 3)
    burst = [(_request(f"z-{k}", 1.0 + k * 0.25, zrng), "B") for k in range(20)]
    burst += [(_request(f"z2-{k}", 91.0 + k * 0.25, zrng), "B") for k in range(20)]
    cold = 5.0
    zero_fc = run(0, burst, flow, priorities, cold_start_s=cold, idle_grace_s=30.0)
    zero_off = run(0, burst, off, priorities, cold_start_s=cold, idle_grace_s=30.0)
    print(f"\nscale from zero: 2 bursts of 20 requests, cold start {cold:g} s, idle grace 30 s")
    print(f"{'run':28} {'succeeded':>9} {'503':>5} {'engines started':>16} {'max ttft s':>11} {'back to 0':>10}")
    for label, outcome in (("with flow control", zero_fc), ("without flow control", zero_off)):
        ttfts = [r.ttft_s for r in outcome.records if r.ttft_s is not None]
        refused = sum(1 for s in outcome.refused.values() if s == 503)
        went_to_zero = any(n == 0 for t, n in outcome.timeline if 31.0 < t < 91.0)
        print(f"{label:28} {completed(outcome):9d} {refused:5d} {outcome.engines_started:16d} "
              f"{max(ttfts) if ttfts else float('nan'):11.2f} {str(went_to_zero):>10}")

    ratio = p99_ttft(with_fc, "B") / solo_p99
    ratio_off = p99_ttft(without_fc, "B") / solo_p99
    result = {
        "victim_p99_ttft_ratio_vs_solo": round(ratio, 3),
        "victim_p99_ttft_ratio_vs_solo_without_flow_control": round(ratio_off, 3),
        "victim_p99_ttft_ratio_vs_solo_engines_fcfs": round(p99_ttft(fifo_engines, "B") / solo_p99, 3),
        "heavy_throughput_ratio_vs_engines_fcfs": round(completed(with_fc, "A") / completed(fifo_engines, "A"), 3),
        "victim_p99_ttft_ratio_vs_solo_no_reserve": round(p99_ttft(with_no_reserve, "B") / solo_p99, 3),
        "heavy_throughput_ratio_vs_no_reserve": round(completed(with_fc, "A") / completed(with_no_reserve, "A"), 3),
        "heavy_throughput_ratio_vs_without_flow_control": round(completed(with_fc, "A") / completed(without_fc, "A"), 3),
        "heavy_p99_ttft_s": round(p99_ttft(with_fc, "A"), 3),
        "heavy_p99_ttft_s_no_reserve": round(p99_ttft(with_no_reserve, "A"), 3),
        "heavy_p99_ttft_s_without_flow_control": round(p99_ttft(without_fc, "A"), 3),
        "victim_p99_ttft_ratio_vs_solo_max_reserve": round(p99_ttft(with_most, "B") / solo_p99, 3),
        "heavy_throughput_ratio_max_reserve_vs_no_reserve": round(
            completed(with_most, "A") / completed(with_no_reserve, "A"), 3),
        "victim_p99_ttft_ratio_vs_solo_tight": round(p99_ttft(with_tight, "B") / solo_p99, 3),
        "scale_from_zero_success_rate": round(completed(zero_fc) / zero_fc.submitted, 4),
        "scale_from_zero_success_rate_without_flow_control": round(completed(zero_off) / zero_off.submitted, 4),
        "requests_lost": sum(lost(o) for o in (with_fc, fifo_engines, with_no_reserve, with_most, with_tight, zero_fc)),
        "priority_inversions": with_fc.inversions + fifo_engines.inversions + with_no_reserve.inversions + with_most.inversions
        + with_tight.inversions + zero_fc.inversions,
        "victim_p99_ttft_ratio_vs_solo_by_seed": by_seed,
        "capacity_rps": round(per_seed[0].capacity_rps, 3),
        "seeds": seeds,
        "fairness": args.fairness,
    }
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"\nvictim P99 TTFT: {ratio:.2f}x solo with flow control ({verdict} the <= {TARGET_RATIO:g} target), "
          f"{ratio_off:.2f}x without")
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
