"""High-density LoRA serving: where adapters live decides how often requests wait for a load.

``python -m benchmarks.lora [--quick]``

200 adapters with Zipf popularity, 8 simulated engines with 8 adapter slots each (64 slots
for 200 adapters, so most adapters can never be resident everywhere). Three strategies on
the same trace, in the same run, all routed by the same router: the gateway's default for a
model with adapters (``RoutingSpec()``: the lora-affinity filter with ``allowLoadingFallback``,
then least-request), built by the gateway's own ``build_router``:

- **placement** (the stack's default): popular adapters get replicas in proportion to their
  traffic, pinned by the sidecar's capacity-bounded rendezvous placement (``STATIC_SLOTS``
  slots per engine); the other slots hold adapters loaded on demand (LRU).
- **random**: the same replica counts pinned on pods in a random order, with the same
  slot-filling rule (a full pod is skipped for the next one, no replica is dropped);
- **dynamic**: the rival the gateway ships: nothing pinned, every engine loads on demand into
  an LRU of all its slots, and lora-affinity with loading fallback sends a request to a holder
  when there is one, else to a pod with a free slot.

When no pod holds the adapter and none has a free slot, the shipped gateway answers an error;
here every strategy sends the request to the adapter's first rendezvous-ranked pod, which
evicts its least recently used idle unpinned adapter (vLLM's own LRU). That is an idealisation
applied identically to all three. A request sent to a pod without its adapter waits for a load
(``LOAD_TIMES_S``, simulated seconds). That time is an assumption (a rank-16 adapter of an 8B
model read from local disk; the tiny adapter of the real-engine tests loads in ~0.08 s), so the
run is repeated at 0.25, 0.5 and 2 s and RESULT carries each. Reported per strategy: the
fraction of requests served without an adapter load, loads per minute, TTFT mean/P99 and e2e
mean/P99; ``default_is_best`` says whether the default matches or beats every rival on both
TTFT P99 and loads per minute at the headline load time (0.5 s), a TTFT P99 inside the rival's
bootstrap 95 % interval (or a load rate inside the rival's Poisson 95 % interval) counting as a
match: P99 and load counts over a few thousand requests are noisy. Random pinning with the same
slot-filling rule is rendezvous placement with another hash, so the two are expected to tie on
these metrics; rendezvous earns its place by agreement without coordination and low churn.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aibrix_spec.routing import RoutingSpec
from benchmarks.workloads import make_trace, to_sim_requests, zipf_weights
from runtime_components.common.stats import percentile
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import EngineView, Simulation, summarize
from runtime_components.gateway.policy import EndpointState, NoEndpointError, RouteRequest, build_router
from runtime_components.sidecar.placement import AdapterDemand, place_adapters, rendezvous_rank

ADAPTERS = 200
PODS = 8
MAX_LORAS = 8
STATIC_SLOTS = 6  # pinned by placement; the other MAX_LORAS - STATIC_SLOTS serve the long tail
LOAD_TIMES_S = (0.25, 0.5, 2.0)  #: the adapter load time is an assumption: every one is run
HEADLINE_LOAD_S = 0.5
STRATEGIES = ("placement", "random", "dynamic")
DEFAULT_STRATEGY = "placement"  #: what the stack deploys: the sidecar's placement, gateway defaults
ROUTING = RoutingSpec()  #: the gateway's default routing, identical for every strategy
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
    """The same replica counts in a random pod order, with placement's slot-filling rule: each
    adapter takes the first ``replicas`` pods of its own random order that still have a free slot."""
    pins: dict[int, set[str]] = {p: set() for p in range(pods)}
    for d in sorted(demands, key=lambda d: (-d.replicas, d.name)):
        chosen = [p for p in rng.sample(range(pods), pods) if len(pins[p]) < slots][: d.replicas]
        for p in chosen:
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

    def __init__(self, pins: dict[int, set[str]], seed: int, load_s: float) -> None:
        self.pods = {p: PodAdapters(pinned=set(pins.get(p, ()))) for p in range(PODS)}
        self.router = build_router(ROUTING, rng=random.Random(seed))
        self.load_s = load_s
        self.loads = 0
        self.served_without_load = 0
        self.inflight: dict[int, int] = {p: 0 for p in range(PODS)}

    def endpoint_states(self, engines: Sequence[EngineView]) -> list[EndpointState]:
        return [
            EndpointState(
                address=f"10.0.0.{e.index}:8000", pod=f"pod-{e.index}", model="base",
                adapters=frozenset(self.pods[e.index].resident()),
                running=float(e.num_running), waiting=float(e.num_waiting), kv_cache_usage=e.kv_cache_usage,
                ttft_s=None, tpot_s=None, throughput_tps=None, inflight=e.num_running + e.num_waiting,
                max_loras=MAX_LORAS,
            )  # fmt: skip
            for e in engines
        ]

    def choose(self, req: SimRequest, engines: Sequence[EngineView]) -> int:
        """Index into ``engines``."""
        adapter = req.adapter
        route_req = RouteRequest(model="base", adapter=adapter, token_ids=tuple(req.prompt_token_ids[:64]),
                                 headers={}, user=None, session_id=None)  # fmt: skip
        states = self.endpoint_states(engines)
        try:
            picked = self.router.pick(route_req, states)
            return next(i for i, s in enumerate(states) if s.address == picked.address)
        except NoEndpointError:
            # no holder, no free slot (the shipped gateway would answer an error): every strategy
            # sends it to its first rendezvous-ranked pod, which evicts an idle adapter
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
        state.ready_at[adapter] = now + self.load_s
        self.loads += 1
        return now + self.load_s


def run_strategy(requests: list[SimRequest], pins: dict[int, set[str]], seed: int, load_s: float) -> dict[str, Any]:
    config = EngineConfig(accelerator="nvidia-a100-80gb", model_arch="llama-3-8b", served_model_name="base",
                          max_loras=MAX_LORAS, lora_load_s=load_s)  # fmt: skip
    strategy = Strategy(pins, seed, load_s)
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
    ttfts = [r.ttft_s for r in records if r.error is None and r.ttft_s is not None]
    return {
        "ttft_p99_s_ci": p99_interval(ttfts, random.Random(seed)),  # type: ignore[dict-item]
        "served_without_load_fraction": strategy.served_without_load / len(requests),
        "loads_per_min": strategy.loads / duration_min,
        # a count of loads: Poisson 95 % interval, the spread chance alone gives it
        "loads_per_min_ci": ((strategy.loads - 1.96 * math.sqrt(strategy.loads)) / duration_min,
                             (strategy.loads + 1.96 * math.sqrt(strategy.loads)) / duration_min),
        "ttft_mean_s": s.ttft.mean,
        "ttft_p99_s": s.ttft.p99,
        "e2e_mean_s": s.e2e.mean,
        "e2e_p99_s": s.e2e.p99,
        "errors": s.errors,
    }


def p99_interval(values: Sequence[float], rng: random.Random, resamples: int = 200) -> tuple[float, float]:
    """Bootstrap 95 % interval of the P99: how far apart two P99s can be by chance alone."""
    p99s = sorted(percentile(rng.choices(values, k=len(values)), 99) for _ in range(resamples))
    return p99s[int(0.025 * resamples)], p99s[int(0.975 * resamples) - 1]


def pins_for(strategy: str, names: Sequence[str], seed: int) -> dict[int, set[str]]:
    demands = replica_demands(names, STATIC_SLOTS * PODS, PODS)
    if strategy == "placement":
        placement = place_adapters(demands, [f"pod-{i}" for i in range(PODS)], STATIC_SLOTS)
        return {i: set(placement.per_pod[f"pod-{i}"]) for i in range(PODS)}
    if strategy == "random":
        return random_pins(demands, PODS, STATIC_SLOTS, random.Random(seed))
    return {}


def is_best(results: dict[str, dict[str, Any]], strategy: str) -> bool:
    """Matches or beats every other strategy on both TTFT P99 and loads per minute.

    A value "matches" the rival's when it is no higher or lies inside the rival's 95 % interval
    (a difference chance alone produces): the bootstrap interval of its TTFT P99, the Poisson
    interval of its load count.
    """
    mine = results[strategy]

    def ok(rival: dict[str, Any], key: str) -> bool:
        return bool(mine[key] <= max(rival[key], rival[f"{key}_ci"][1]))

    return all(ok(r, "ttft_p99_s") and ok(r, "loads_per_min") for name, r in results.items() if name != strategy)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="a shorter trace (about a minute)")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    n = 3000 if args.quick else 24000
    rate = 12.0
    names = adapter_names()
    trace = make_trace(kind="unique", n=n, rate=rate, seed=args.seed, adapters=names, adapter_zipf=ZIPF_S)
    requests = [replace(r, salt="") for r in to_sim_requests(trace)]
    pins = {s: pins_for(s, names, args.seed) for s in STRATEGIES}

    runs = {load_s: {s: run_strategy(requests, pins[s], args.seed, load_s) for s in STRATEGIES} for load_s in LOAD_TIMES_S}
    print(f"LoRA serving: {ADAPTERS} adapters (Zipf s={ZIPF_S}), {PODS} engines x {MAX_LORAS} slots "
          f"({STATIC_SLOTS} pinned by placement/random), {n} requests at {rate:g} req/s; "
          f"routing for all: {ROUTING.policy} + lora-affinity (allowLoadingFallback)")  # fmt: skip
    header = (f"{'load s':>6}  {'strategy':<11}{'no-load %':>10}{'loads/min':>11}{'TTFT mean':>11}{'TTFT P99':>10}"
              f"{'P99 95% CI':>16}"
              f"{'e2e mean':>10}{'e2e P99':>9}{'errors':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for load_s, results in runs.items():
        for name, r in results.items():
            print(f"{load_s:>6g}  {name:<11}{100 * r['served_without_load_fraction']:>9.1f}%{r['loads_per_min']:>11.1f}"
                  f"{r['ttft_mean_s']:>10.3f}s{r['ttft_p99_s']:>9.3f}s"
                  f"{'[{:.3f}, {:.3f}]'.format(*r['ttft_p99_s_ci']):>16}{r['e2e_mean_s']:>9.2f}s{r['e2e_p99_s']:>8.2f}s"
                  f"{r['errors']:>8}")  # fmt: skip
    headline = runs[HEADLINE_LOAD_S]
    best_everywhere = {load_s: is_best(results, DEFAULT_STRATEGY) for load_s, results in runs.items()}
    for load_s, ok in best_everywhere.items():
        winners = [s for s in STRATEGIES if is_best(runs[load_s], s)]
        verdict = "matches or beats" if ok else "does NOT match or beat"
        print(f"load {load_s:g} s: default ({DEFAULT_STRATEGY}) {verdict} every rival "
              f"on TTFT P99 and loads/min; best on both: {', '.join(winners) or 'none (a trade-off)'}")  # fmt: skip
    result: dict[str, object] = {"default_strategy": DEFAULT_STRATEGY, "load_s": HEADLINE_LOAD_S}
    for name, r in headline.items():
        for key in ("served_without_load_fraction", "loads_per_min", "ttft_mean_s", "ttft_p99_s", "e2e_p99_s"):
            result[f"{name}_{key}"] = round(r[key], 4)
        result[f"{name}_ttft_p99_s_ci"] = [round(v, 4) for v in r["ttft_p99_s_ci"]]
        result[f"{name}_loads_per_min_ci"] = [round(v, 1) for v in r["loads_per_min_ci"]]
    # Keys issue 9's checks read: ours, and "every adapter everywhere it fits", which with the
    # routing now identical across strategies is the dynamic run (any pod may load any adapter).
    result["served_without_load_fraction"] = result[f"{DEFAULT_STRATEGY}_served_without_load_fraction"]
    result["everywhere_served_without_load_fraction"] = result["dynamic_served_without_load_fraction"]
    result["default_is_best"] = best_everywhere[HEADLINE_LOAD_S]
    result["default_is_best_at_every_load_time"] = all(best_everywhere.values())
    result["sensitivity"] = {
        f"{load_s:g}": {name: {"ttft_p99_s": round(r["ttft_p99_s"], 4), "loads_per_min": round(r["loads_per_min"], 1)}
                        for name, r in results.items()}
        for load_s, results in runs.items()
    }  # fmt: skip
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
