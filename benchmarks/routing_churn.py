"""Cache-churn scenario: prefix-aware routing on its own decisions vs on the engines' KV events.

Engines with small KV caches (``num_gpu_blocks``), so prefixes are evicted all the time,
serve a shared-prefix load over more schemas than the fleet holds at once. The same seeded
trace runs twice through ``benchmarks.routing``'s ``SimGateway`` with
``prefix-cache-aware:2,least-request``:

- ``decisions``: the index records where the gateway sent each prompt, and keeps believing
  an engine holds a prefix long after that engine evicted it;
- ``kv-events``: the index is fed by the simulated engines' KV events (the simulator's
  ``kv_events`` hook, ``kv_event_delay_s`` after each step, through the gateway's own
  ``EventTranslator``), and a decision is only a provisional entry until they arrive.

``run_churn`` returns the summaries and ``kv_events_mean_ttft_ratio_vs_decisions`` (mean
TTFT of kv-events over decisions, same trace, same run; lower is better). Idealised: the
events arrive without loss, a fixed delay after the step that produced them.

Run alone: ``python -m benchmarks.routing_churn --quick``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aibrix_spec.routing import RoutingSpec
from benchmarks.routing_sim import MODEL, SimGateway, engine_address, format_table
from benchmarks.workloads.arrivals import poisson
from benchmarks.workloads.generators import bird_sql
from benchmarks.workloads.trace import to_sim_requests
from runtime_components.common.kv_event_format import EventBatch, KVEvent
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import Simulation, Summary, summarize
from runtime_components.gateway.kv_events import EventTranslator
from runtime_components.gateway.policy import build_router
from runtime_components.gateway.policy.prefix import PrefixCacheAwareScorer, PrefixIndex, use_event_index

__all__ = ["ChurnScenario", "churn_requests", "run_churn", "run_mode"]

POLICY = "prefix-cache-aware:2,least-request"
MODES = ("decisions", "kv-events")


@dataclass(frozen=True)
class ChurnScenario:
    """The fleet and the load of the churn scenario."""

    engines: int = 8
    accelerator: str = "nvidia-a10"
    num_gpu_blocks: int = 400  #: 6,400 tokens per engine: about five schemas besides running requests
    databases: int = 96  #: ~1,000-token schemas: far more than the fleet's caches hold together
    rate: float = 12.0  #: requests per second (Poisson): busy, not overloaded
    requests_quick: int = 2000
    requests_full: int = 8000
    warmup: float = 0.2  #: fraction of the trace left out of the statistics
    scrape_interval_s: float = 0.5
    kv_event_delay_s: float = 0.005  #: publisher -> gateway lag of each step's events
    provisional_ttl_s: float = 2.0


def churn_requests(scenario: ChurnScenario, n: int, seed: int) -> list[SimRequest]:
    rng = random.Random(f"churn-{seed}")
    return to_sim_requests(bird_sql(poisson(scenario.rate, rng, n=n), rng, model=MODEL, n_databases=scenario.databases))


def run_mode(mode: str, requests: Sequence[SimRequest], scenario: ChurnScenario, *, seed: int) -> Summary:
    """Replay ``requests`` with the prefix index in ``mode`` (decisions | kv-events)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    spec = RoutingSpec.model_validate({"policy": POLICY, "parameters": {"prefixCacheAware": {
        "index": mode, "provisionalTtlS": scenario.provisional_ttl_s}}})
    router = build_router(spec, rng=random.Random(seed))
    gateway = SimGateway(router, scenario.scrape_interval_s)
    config = EngineConfig(accelerator=scenario.accelerator, model_arch=MODEL, num_gpu_blocks=scenario.num_gpu_blocks)
    hook = None
    if mode == "kv-events":
        params = spec.parameters.prefix_cache_aware
        index = PrefixIndex(params.max_index_blocks)
        assert use_event_index(router.profile.plugins(), index) == 1
        translator = EventTranslator(index, MODEL, config.block_size, params.max_index_blocks)

        def hook(engine: int, now: float, events: Sequence[KVEvent]) -> None:
            translator.apply(engine_address(engine), EventBatch(now, tuple(events)))

    sim = Simulation([config] * scenario.engines, gateway.route, kv_events=hook,
                     kv_event_delay_s=scenario.kv_event_delay_s)
    for plugin in router.profile.plugins():  # provisional entries expire on simulated time
        if isinstance(plugin, PrefixCacheAwareScorer) and plugin.provisional is not None:
            plugin.provisional.clock = lambda: sim.now
    gateway.attach(sim, max(r.arrival_s for r in requests))
    records = sim.run(requests)
    warmup_s = sorted(r.arrival_s for r in requests)[int(len(requests) * scenario.warmup)]
    return summarize([r for r in records if r.arrival_s >= warmup_s])


def run_churn(*, quick: bool = True, seed: int = 1, scenario: ChurnScenario | None = None) -> dict[str, object]:
    """Both modes on one trace; the summaries and ``kv_events_mean_ttft_ratio_vs_decisions``."""
    scenario = scenario or ChurnScenario()
    requests = churn_requests(scenario, scenario.requests_quick if quick else scenario.requests_full, seed)
    summaries = {mode: run_mode(mode, requests, scenario, seed=seed) for mode in MODES}
    ratio = summaries["kv-events"].ttft.mean / summaries["decisions"].ttft.mean
    return {
        "summaries": summaries,
        "mean_ttft_s": {m: round(s.ttft.mean, 4) for m, s in summaries.items()},
        "prefix_hit_fraction": {m: round(s.prefix_hit_fraction, 4) for m, s in summaries.items()},
        "kv_events_mean_ttft_ratio_vs_decisions": round(ratio, 4),
        "requests": len(requests),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.routing_churn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller trace")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = run_churn(quick=args.quick, seed=args.seed)
    scenario = ChurnScenario()
    title = (f"cache churn: {out['requests']} requests at {scenario.rate:g} req/s, {scenario.engines} engines of "
             f"{scenario.num_gpu_blocks} KV blocks, {scenario.databases} schemas, {POLICY}")
    summaries: dict[str, Summary] = out.pop("summaries")  # type: ignore[assignment]
    print(format_table(title, {f"index={m}": s for m, s in summaries.items()}))
    out["wall_s"] = round(time.perf_counter() - started, 1)
    print("RESULT " + json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
