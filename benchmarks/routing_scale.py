"""The gateway at scale, two questions ``benchmarks.routing`` asks in the same run.

1. **Cost per decision as the fleet grows** (``decision_costs``): the routing work the gateway
   does per request, measured in this process on the production router: ``decide`` on the
   model's live ``EndpointPool``, then ``on_routed`` and the two in-flight updates (request
   start and end) that keep the pool current. Prompts share prefixes (32 system prompts of
   ~500 tokens), so the prefix index holds real chains. The baseline is the same router
   given the full list of endpoints (the scoring every request did before the pool): it is
   what a decision costs when it grows with the fleet. The ratio that matters is
   ``decide_us(512) / decide_us(8)`` on the pool, per policy.

2. **Several gateway replicas** (``multi_replica``): the routing benchmark's shared-prefix
   workload on simulated engines, routed by 3 replicas with requests spread uniformly at
   random across them (what a Service does), against one replica. *local*: each replica
   learns prefixes on its own; *shared*: each replica's changes reach the others through
   ``routing_sync`` batches, applied ``sync_delay_s`` later (the flush interval plus the
   round trip of one batch through a real redis-server, measured in this run when
   redis-server is installed, else the labelled assumption ``ASSUMED_REDIS_RTT_S``). Each
   replica counts only its own in-flight requests, as real replicas do; scraped engine
   metrics are seen by all.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aibrix_spec.routing import RoutingSpec
from runtime_components.common.processes import stop_process
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import EngineView, Simulation, Summary, summarize
from runtime_components.gateway.policy import EndpointPool, EndpointState, RouteRequest, build_router
from runtime_components.gateway.routing_sync import RoutingSync
from runtime_components.gateway.routing_sync.transports import MemoryBus

__all__ = ["ASSUMED_REDIS_RTT_S", "DecisionCost", "decision_costs", "measure_redis_batch_rtt", "multi_replica"]

SCALE_POLICIES = ("least-request", "prefix-cache-aware:2,least-request")
FLEET_SIZES = (8, 64, 512)
ASSUMED_REDIS_RTT_S = 0.001  #: used only when redis-server is absent; 1 ms is a same-zone round trip


@dataclass(frozen=True)
class DecisionCost:
    policy: str
    endpoints: int
    pool_us: float  #: per request on the live pool: decide + on_routed + in-flight start and end
    decide_us: float  #: decide alone on the live pool
    full_us: float  #: decide on the full list (the baseline: scoring every endpoint)


def _prompts(rng: random.Random, n: int) -> list[list[int]]:
    systems = [[rng.randrange(32_000) for _ in range(500)] for _ in range(32)]
    return [rng.choice(systems) + [rng.randrange(32_000) for _ in range(rng.randrange(20, 120))] for _ in range(n)]


def _one_cost(policy: str, n: int, prompts: list[list[int]], repeats: int) -> DecisionCost:
    router = build_router(RoutingSpec(policy=policy), rng=random.Random(0), shortlist_size=3)
    endpoints = [EndpointState(address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:8000", model="m",
                               running=float(i % 3), waiting=0.0) for i in range(n)]
    pool = EndpointPool(endpoints)
    live: list[str] = []

    def route(tokens: list[int]) -> tuple[float, float]:
        req = RouteRequest(model="m", token_ids=tokens)
        t0 = time.perf_counter()
        decision = router.decide(req, pool)
        t1 = time.perf_counter()
        router.on_routed(req, decision.endpoint)
        state = pool.get(decision.endpoint.address)
        assert state is not None
        pool.put(dataclasses.replace(state, inflight=state.inflight + 1))
        live.append(state.address)
        if len(live) > 2 * n:  # requests end in arrival order, keeping ~2 per endpoint in flight
            ended = pool.get(live.pop(0))
            if ended is not None:
                pool.put(dataclasses.replace(ended, inflight=max(0, ended.inflight - 1)))
        return t1 - t0, time.perf_counter() - t0

    for tokens in prompts[: len(prompts) // 4]:  # warm the index and the pool's load spread
        route(tokens)
    decide, total = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        d_sum = 0.0
        for tokens in prompts:
            d, _ = route(tokens)
            d_sum += d
        total.append((time.perf_counter() - started) / len(prompts))
        decide.append(d_sum / len(prompts))
    full = []
    for _ in range(repeats):
        listed = pool.values()
        sample = prompts[: max(20, len(prompts) // (1 + n // 16))]
        started = time.perf_counter()
        for tokens in sample:
            router.decide(RouteRequest(model="m", token_ids=tokens), listed)
        full.append((time.perf_counter() - started) / len(sample))
    # The median of the repeats: one slow repeat (another process on the core) does not decide it.
    return DecisionCost(policy, n, statistics.median(total) * 1e6, statistics.median(decide) * 1e6,
                        statistics.median(full) * 1e6)


def decision_costs(quick: bool, seed: int) -> list[DecisionCost]:
    prompts = _prompts(random.Random(seed), 400 if quick else 2000)
    return [_one_cost(policy, n, prompts, repeats=5 if quick else 9) for policy in SCALE_POLICIES for n in FLEET_SIZES]


def measure_redis_batch_rtt(batch_bytes: int, samples: int = 200) -> float | None:
    """Median seconds from XADD of one batch to its XREAD by another client, on a real redis-server
    (None when redis-server is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            writer = redis.Redis(port=port, socket_connect_timeout=5)
            deadline = time.monotonic() + 10
            while True:
                try:
                    writer.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.05)
            reader = redis.Redis(port=port)
            payload = b"x" * batch_bytes
            times = []
            last = "0-0"
            for _ in range(samples):
                t0 = time.perf_counter()
                writer.xadd("bench", {"b": payload}, maxlen=2000, approximate=True)
                answer = reader.xread({"bench": last}, count=1, block=1000)
                times.append(time.perf_counter() - t0)
                last = answer[0][1][-1][0]
            writer.close()
            reader.close()
            return statistics.median(times)
        finally:
            stop_process(proc)


class _Replica:
    """One gateway replica in the simulation: its router, its own in-flight counts, its sync."""

    def __init__(self, policy: str, seed: int, sync: RoutingSync | None) -> None:
        self.sync = sync
        self.router = build_router(RoutingSpec(policy=policy), rng=random.Random(seed),
                                   state=sync.state if sync is not None else None, scope="m")
        self.inflight: dict[int, int] = {}


def multi_replica(
    requests: Sequence[SimRequest],
    config: EngineConfig,
    *,
    policy: str,
    engines: int,
    replicas: int,
    shared: bool,
    sync_delay_s: float,
    scrape_interval_s: float,
    warmup_s: float,
    seed: int,
    endpoint_state: Callable[[EngineView, dict[int, int], dict[int, tuple[float, float]]], EndpointState],
) -> Summary:
    """Replay ``requests`` with ``replicas`` gateway replicas; return the summary after warm-up."""
    bus = MemoryBus()  # only its batches are used: the simulation delivers them itself, late by sync_delay_s
    reps = [_Replica(policy, seed + i, RoutingSync(bus.transport(), origin=f"r{i}") if shared else None)
            for i in range(replicas)]
    spread = random.Random(seed)
    pending: dict[str, tuple[_Replica, RouteRequest, EndpointState, int]] = {}
    scraped: dict[int, tuple[float, float]] = {}  # engine -> (running, waiting) at the last scrape
    settled = [0]

    def settle(sim: Simulation) -> None:
        for record in sim.records[settled[0]:]:
            entry = pending.pop(record.request_id, None)
            if entry is not None:
                rep, req, endpoint, index = entry
                rep.inflight[index] -= 1
        settled[0] = len(sim.records)

    def scrape(sim: Simulation, now: float) -> None:
        settle(sim)
        for view in sim.routable():
            scraped[view.index] = (float(view.num_running), float(view.num_waiting))

    def deliver(payload: bytes, sender: _Replica) -> Callable[[Simulation, float], None]:
        def apply(sim: Simulation, now: float) -> None:
            for rep in reps:
                if rep is not sender and rep.sync is not None:
                    rep.sync.apply_payload(payload)
        return apply

    def route(sim_req: SimRequest, views: Sequence[EngineView]) -> int:
        settle(sim)
        rep = reps[spread.randrange(len(reps))]
        states = [endpoint_state(v, rep.inflight, scraped) for v in views]
        req = RouteRequest(model="m", token_ids=sim_req.prompt_token_ids, session_id=sim_req.session_id)
        chosen = rep.router.decide(req, states).endpoint
        rep.router.on_routed(req, chosen)
        position = next(i for i, e in enumerate(states) if e.address == chosen.address)
        index = views[position].index
        rep.inflight[index] = rep.inflight.get(index, 0) + 1
        pending[sim_req.request_id] = (rep, req, chosen, index)
        if rep.sync is not None:
            payload = rep.sync.take_batch()
            if payload is not None:
                sim.call_at(sim.now + sync_delay_s, deliver(payload, rep))
        return position

    sim = Simulation([config] * engines, route)
    last = max(r.arrival_s for r in requests)
    for k in range(int(last / scrape_interval_s) + 2):
        sim.call_at(k * scrape_interval_s, scrape)
    records = sim.run(requests)
    return summarize([r for r in records if r.arrival_s >= warmup_s])


def sim_endpoint_state(view: EngineView, inflight: dict[int, int], scraped: dict[int, tuple[float, float]]) -> EndpointState:
    running, waiting = scraped.get(view.index, (None, None))
    return EndpointState(address=f"10.0.{view.index // 256}.{view.index % 256}:8000", model="m",
                         inflight=inflight.get(view.index, 0), running=running, waiting=waiting)
