"""High-density LoRA serving: where adapters live decides how often requests wait for a load.

``python -m benchmarks.lora [--quick]``

200 adapters with Zipf popularity, 8 simulated engines with 8 adapter slots each (64 slots
for 200 adapters, so most adapters can never be resident everywhere). Three strategies on
the same trace, in the same run:

- **placement** (ours): popular adapters get replicas in proportion to their traffic and are
  pinned by the sidecar's capacity-bounded rendezvous placement (``STATIC_SLOTS`` slots per
  engine); requests go only to pods holding the adapter (the gateway's lora-affinity filter,
  least-request among holders); adapters with no pinned holder use the remaining slots, sent
  to the pod their rendezvous rank names first, so one tail adapter keeps reusing one slot.
- **random**: the same replica counts pinned on uniformly random pods (a pod that is full
  drops the extra replica), routed the same way;
- **everywhere**: every engine loads whatever it is sent into an LRU of 8 slots, and routing
  ignores adapters (least-request), as if every adapter were available on every pod.

A request sent to a pod without its adapter waits for a load (``LOAD_S`` simulated seconds,
an assumption for a rank-16 adapter of an 8B model read from local disk; the tiny adapter
of the real-engine tests loads in ~0.08 s) and evicts the least recently used unpinned
adapter. Reported per strategy: the fraction of requests served without an adapter load,
loads per minute, TTFT mean/P99 and e2e mean/P99.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from aibrix_spec.routing import RoutingSpec
from benchmarks.workloads import make_trace, to_sim_requests, zipf_weights
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import EngineView, Simulation, summarize
from runtime_components.gateway.policy import EndpointState, NoEndpointError, RouteRequest, build_router
from runtime_components.sidecar.placement import AdapterDemand, place_adapters, rendezvous_rank

ADAPTERS = 200
PODS = 8
MAX_LORAS = 8
STATIC_SLOTS = 6  # pinned by placement; the other MAX_LORAS - STATIC_SLOTS serve the long tail
LOAD_S = 0.5
ZIPF_S = 1.1


def adapter_names() -> list[str]:
    return [f"lora-{i:03d}" for i in range(ADAPTERS)]


def replica_demands(names: Sequence[str], static_slots: int, pods: int) -> list[AdapterDemand]:
    """Replicas in proportion to popularity over the pinned slots, at least 1, at most ``pods``;
    the most popular adapters are served first until the slots run out."""
    weights = zipf_weights(len(names), ZIPF_S)
    demands, left = [], static_slots
    for name, w in sorted(zip(names, weights, strict=True), key=lambda nw: -nw[1]):
        if left <= 0:
            break
        k = max(1, min(pods, round(w * static_slots), left))
        demands.append(AdapterDemand(name, k))
        left -= k
    return demands


def random_pins(demands: Sequence[AdapterDemand], pods: int, slots: int, rng: random.Random) -> dict[int, set[str]]:
    pins: dict[int, set[str]] = {p: set() for p in range(pods)}
    for d in demands:
        for p in rng.sample(range(pods), d.replicas):
            if len(pins[p]) < slots:
                pins[p].add(d.name)
    return pins


@dataclass
class PodAdapters:
    """One engine's adapters as its sidecar and engine see them."""

    pinned: set[str] = field(default_factory=set)
    lru: OrderedDict[str, None] = field(default_factory=OrderedDict)  # unpinned, oldest first
    ready_at: dict[str, float] = field(default_factory=dict)  # loading finishes at

    def resident(self) -> set[str]:
        return self.pinned | set(self.lru)


class Strategy:
    """Routes a request and decides whether (and where) an adapter must be loaded first."""

    def __init__(self, kind: str, pins: dict[int, set[str]], seed: int) -> None:
        self.kind = kind
        self.pods = {p: PodAdapters(pinned=set(pins.get(p, ()))) for p in range(PODS)}
        spec = RoutingSpec.model_validate(
            {"policy": "least-request", "parameters": {"loraAffinity": {"allowLoadingFallback": False}}})
        self.router = build_router(spec, rng=random.Random(seed))
        self.loads = 0
        self.served_without_load = 0
        self.inflight: dict[int, int] = {p: 0 for p in range(PODS)}

    def endpoint_states(self, engines: Sequence[EngineView], adapter_aware: bool) -> list[EndpointState]:
        return [
            EndpointState(
                address=f"10.0.0.{e.index}:8000", pod=f"pod-{e.index}", model="base",
                adapters=frozenset(self.pods[e.index].resident()) if adapter_aware else frozenset(),
                running=float(e.num_running), waiting=float(e.num_waiting), kv_cache_usage=e.kv_cache_usage,
                ttft_s=None, tpot_s=None, throughput_tps=None, inflight=e.num_running + e.num_waiting,
                max_loras=MAX_LORAS,
            )  # fmt: skip
            for e in engines
        ]

    def choose(self, req: SimRequest, engines: Sequence[EngineView]) -> int:
        """Index into ``engines``."""
        adapter = req.adapter
        route_req = RouteRequest(model="base", adapter=adapter if self.kind != "everywhere" else None,
                                 token_ids=tuple(req.prompt_token_ids[:64]), headers={}, user=None, session_id=None)  # fmt: skip
        states = self.endpoint_states(engines, adapter_aware=self.kind != "everywhere")
        try:
            picked = self.router.pick(route_req, states)
            return next(i for i, s in enumerate(states) if s.address == picked.address)
        except NoEndpointError:
            # no pod holds it: the tail goes to its first-ranked pod, so it reuses one slot
            order = rendezvous_rank(adapter or "", [f"pod-{e.index}" for e in engines])
            return [f"pod-{e.index}" for e in engines].index(order[0])

    def admit(self, pod: int, adapter: str, now: float) -> float | None:
        """When the request can start on ``pod``, loading (and evicting) when the adapter is absent;
        ``None`` when the pod has no slot to load into right now."""
        state = self.pods[pod]
        if adapter in state.pinned or adapter in state.lru:
            if adapter in state.lru:
                state.lru.move_to_end(adapter)
            ready = state.ready_at.get(adapter, 0.0)
            if ready <= now:
                self.served_without_load += 1
            return max(now, ready)
        capacity = MAX_LORAS - len(state.pinned)
        while len(state.lru) >= capacity:
            # evict the least recently used adapter that is not still loading for a waiting request
            idle = [a for a in state.lru if state.ready_at.get(a, 0.0) <= now]
            if not idle:
                return None  # every unpinned slot is mid-load: try another pod
            del state.lru[idle[0]]
            state.ready_at.pop(idle[0], None)
        state.lru[adapter] = None
        state.ready_at[adapter] = now + LOAD_S
        self.loads += 1
        return now + LOAD_S


def run_strategy(kind: str, requests: list[SimRequest], config: EngineConfig, pins: dict[int, set[str]],
                 seed: int) -> dict[str, float]:
    strategy = Strategy(kind, pins, seed)
    sim: Simulation

    def route(req: SimRequest, engines: Sequence[EngineView]) -> int | None:
        first = strategy.choose(req, engines)
        for offset in range(len(engines)):
            choice = (first + offset) % len(engines)
            pod = engines[choice].index
            start = strategy.admit(pod, req.adapter or "", sim.now)
            if start is not None:
                break
        else:
            raise RuntimeError(f"no engine has a free adapter slot for {req.adapter}")
        core_adapters = set(engines[choice].adapters)
        want = strategy.pods[pod].resident()
        for name in sorted(core_adapters - want):
            sim.unload_adapter(pod, name)
        for name in sorted(want - core_adapters):
            sim.load_adapter(pod, name)
        if start <= sim.now:
            return choice
        sim.submit(start, req, engine=pod)  # waits for the adapter load, keeps its arrival time
        return None

    sim = Simulation([config] * PODS, route)
    records = sim.run(requests)
    s = summarize(records)
    duration_min = max(r.arrival_s for r in requests) / 60.0
    return {
        "served_without_load_fraction": strategy.served_without_load / len(requests),
        "loads_per_min": strategy.loads / duration_min,
        "ttft_mean_s": s.ttft.mean,
        "ttft_p99_s": s.ttft.p99,
        "e2e_mean_s": s.e2e.mean,
        "e2e_p99_s": s.e2e.p99,
        "errors": s.errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="a shorter trace (about a minute)")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    n = 6000 if args.quick else 24000
    rate = 12.0
    names = adapter_names()
    trace = make_trace(kind="unique", n=n, rate=rate, seed=args.seed, adapters=names, adapter_zipf=ZIPF_S)
    requests = [replace(r, salt="") for r in to_sim_requests(trace)]
    config = EngineConfig(accelerator="nvidia-a100-80gb", model_arch="llama-3-8b", served_model_name="base",
                          max_loras=MAX_LORAS, lora_load_s=LOAD_S)

    demands = replica_demands(names, STATIC_SLOTS * PODS, PODS)
    placement = place_adapters(demands, [f"pod-{i}" for i in range(PODS)], STATIC_SLOTS)
    ours = {i: set(placement.per_pod[f"pod-{i}"]) for i in range(PODS)}
    rand = random_pins(demands, PODS, STATIC_SLOTS, random.Random(args.seed))

    results = {
        "placement": run_strategy("placement", requests, config, ours, args.seed),
        "random": run_strategy("random", requests, config, rand, args.seed),
        "everywhere": run_strategy("everywhere", requests, config, {}, args.seed),
    }
    print(f"LoRA serving: {ADAPTERS} adapters (Zipf s={ZIPF_S}), {PODS} engines x {MAX_LORAS} slots, "
          f"{n} requests at {rate:g} req/s, adapter load {LOAD_S:g} s")  # fmt: skip
    header = (f"{'strategy':<12}{'no-load %':>10}{'loads/min':>11}{'TTFT mean':>11}{'TTFT P99':>10}"
              f"{'e2e mean':>10}{'e2e P99':>9}{'errors':>8}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<12}{100 * r['served_without_load_fraction']:>9.1f}%{r['loads_per_min']:>11.1f}"
              f"{r['ttft_mean_s']:>10.3f}s{r['ttft_p99_s']:>9.3f}s{r['e2e_mean_s']:>9.2f}s{r['e2e_p99_s']:>8.2f}s"
              f"{r['errors']:>8}")
    ours_r, rnd, evr = results["placement"], results["random"], results["everywhere"]
    result = {
        "served_without_load_fraction": round(ours_r["served_without_load_fraction"], 4),
        "random_served_without_load_fraction": round(rnd["served_without_load_fraction"], 4),
        "everywhere_served_without_load_fraction": round(evr["served_without_load_fraction"], 4),
        "loads_per_min": round(ours_r["loads_per_min"], 1),
        "random_loads_per_min": round(rnd["loads_per_min"], 1),
        "everywhere_loads_per_min": round(evr["loads_per_min"], 1),
        "ttft_mean_s": round(ours_r["ttft_mean_s"], 4),
        "ttft_p99_s": round(ours_r["ttft_p99_s"], 4),
        "everywhere_ttft_mean_s": round(evr["ttft_mean_s"], 4),
        "everywhere_ttft_p99_s": round(evr["ttft_p99_s"], 4),
        "random_ttft_mean_s": round(rnd["ttft_mean_s"], 4),
        "random_ttft_p99_s": round(rnd["ttft_p99_s"], 4),
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
