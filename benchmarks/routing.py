"""Routing benchmark: which policy wins on which workload, measured on simulated engines.

Run ``python -m benchmarks.routing --quick`` (about a minute). Every policy replays the
same seeded trace against the same fleet in one run, so the comparison is like for like.

Setup:

- **Engines**: 8 simulated vLLM engines (``runtime_components.engine_sim``: the stepped
  ``EngineCore`` driven by the discrete-event ``Simulation``), Llama-3-8B on NVIDIA A10
  (24 GB) by default. On that GPU the KV cache holds about 2,600 blocks (42k tokens), so
  whether a prompt's prefix is still cached depends on where earlier prompts went, which
  is what prefix-aware routing exploits; an 80 GB GPU would cache every schema everywhere.
- **The gateway is modelled as the real one behaves** (``SimGateway``): it routes with the
  production router (``runtime_components.gateway.policy.build_router``), counts its own
  in-flight requests per engine (incremented when it routes, decremented when it sees the
  request finish), and sees engine metrics only as scraped every ``--scrape-interval``
  seconds (0.5 s, the gateway's default): running/waiting/KV usage as gauges, TTFT/TPOT as
  histogram deltas between two scrapes, throughput as token-counter deltas / seconds.
  Prefix and session hooks (``on_routed``/``on_finished``) are called as the gateway does.
- **Workloads** (``benchmarks.workloads``, seeded): *shared-prefix* is the Bird-SQL-like
  text-to-SQL load (a ~1,000-token schema prefix per database, short questions, Zipf
  database popularity) over ``--databases`` databases (64: more schemas than one engine's
  cache holds, fewer than the fleet's); *unique* has no shared prefix at all; *chat* is
  multi-turn sessions with a growing shared history. Poisson arrivals at a rate that keeps
  the random baseline busy but not overloaded.

Reported: TTFT and end-to-end latency (mean, P50, P99; seconds of simulated time),
throughput (completed requests/s and output tokens/s) and the engines' prefix-cache hit
fraction (cached prompt tokens / prompt tokens), over the requests arriving after a warm-up
(the first ``--warmup`` fraction of the trace, 20%: every policy starts with empty caches,
and the cold-start burst of misses would otherwise dominate every tail). The last line is ``RESULT {json}`` with
``prefix_vs_random_mean_ttft_reduction = 1 - TTFT_mean(prefix) / TTFT_mean(random)`` and
the P99 analogue on shared-prefix, and ``unique_prompts_ttft_ratio_vs_least_request =
TTFT_mean(prefix) / TTFT_mean(least-request)`` on unique prompts. Simulated time does not
depend on this machine's load; only the wall time of the run does.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aibrix_spec.catalog import ACCELERATORS
from aibrix_spec.routing import POLICY_NAMES, RoutingSpec
from benchmarks.routing_churn import run_churn
from benchmarks.routing_scale import (
    ASSUMED_REDIS_RTT_S,
    decision_costs,
    measure_redis_batch_rtt,
    multi_replica,
    sim_endpoint_state,
)
from benchmarks.routing_sim import MODEL, SimGateway, format_table
from benchmarks.workloads.arrivals import poisson
from benchmarks.workloads.generators import bird_sql, chat_sessions, unique_prompts
from benchmarks.workloads.trace import TraceRequest, to_sim_requests
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import Simulation, Summary, summarize
from runtime_components.gateway.policy import build_router

BENCH_POLICIES = (
    "random",
    "least-request",
    "least-kv-cache",
    "least-latency",
    "throughput",
    "power-of-two",
    "prefix-cache-aware",
    "session-affinity",
)


@dataclass(frozen=True)
class Workload:
    """One workload of the benchmark: its generator, size and arrival rate."""

    name: str
    n_quick: int
    n_full: int
    rate: float  #: requests per second (Poisson)


WORKLOADS = (
    Workload("shared-prefix", n_quick=3000, n_full=8000, rate=60.0),
    Workload("unique", n_quick=1500, n_full=6000, rate=24.0),
    Workload("chat", n_quick=1000, n_full=4000, rate=10.0),
)


def make_requests(workload: Workload, n: int, seed: int, databases: int) -> list[SimRequest]:
    """The workload's trace (seeded), tokenized for the simulator."""
    rng = random.Random(f"{workload.name}-{seed}")
    times = poisson(workload.rate, rng, n=n)
    trace: list[TraceRequest]
    if workload.name == "shared-prefix":
        trace = bird_sql(times, rng, model=MODEL, n_databases=databases)
    elif workload.name == "unique":
        trace = unique_prompts(times, rng, model=MODEL)
    else:
        trace = chat_sessions(times, rng, model=MODEL)
    return to_sim_requests(trace)


def run_policy(
    policy: str,
    requests: Sequence[SimRequest],
    config: EngineConfig,
    *,
    engines: int,
    seed: int,
    scrape_interval_s: float,
    warmup_s: float,
) -> Summary:
    """Replay ``requests`` on ``engines`` engines routed by ``policy``; summarize the records
    of requests arriving after ``warmup_s`` (every policy starts with empty caches)."""
    gateway = SimGateway(build_router(RoutingSpec(policy=policy), rng=random.Random(seed)), scrape_interval_s)
    sim = Simulation([config] * engines, gateway.route)
    gateway.attach(sim, max(r.arrival_s for r in requests))
    records = sim.run(requests)
    return summarize([r for r in records if r.arrival_s >= warmup_s])


def save_plot(results: dict[str, dict[str, Summary]], path: Path) -> str:
    """Bar chart of mean and P99 TTFT per policy and workload; returns a note of what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (workload, rows) in zip(axes[0], results.items()):
        names = list(rows)
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [rows[n].ttft.mean for n in names], width=0.4, label="mean")
        ax.bar([x + 0.2 for x in xs], [rows[n].ttft.p99 for n in names], width=0.4, label="P99")
        ax.set_xticks(list(xs), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"TTFT, {workload}")
        ax.set_ylabel("seconds")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot saved to {path}"


def _reduction(new: float, base: float) -> float:
    return round(1.0 - new / base, 4) if base > 0 and not math.isnan(new) else math.nan


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.routing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller traces (about a minute)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the traces and the routers (default 1)")
    parser.add_argument("--engines", type=int, default=8, help="simulated engines (default 8)")
    parser.add_argument("--accelerator", default="nvidia-a10", help="GPU of every engine (default nvidia-a10)")
    parser.add_argument("--databases", type=int, default=64, help="schemas in the shared-prefix workload (default 64)")
    parser.add_argument(
        "--warmup", type=float, default=0.2,
        help="fraction of each trace (its first arrivals) left out of the statistics (default 0.2)"
    )
    parser.add_argument("--scrape-interval", type=float, default=0.5, help="seconds between metric scrapes (default 0.5)")
    parser.add_argument(
        "--policies", default=",".join(BENCH_POLICIES),
        help="comma-separated policies (default: every built-in but lora-affinity)"
    )
    parser.add_argument("--plot", default="benchmarks/results/routing.png", help="PNG path for the TTFT chart ('' for none)")
    args = parser.parse_args(argv)
    if not 1 <= args.engines <= 256:
        parser.error(f"--engines must be between 1 and 256, got {args.engines}")
    if args.accelerator not in ACCELERATORS:
        parser.error(f"--accelerator: unknown GPU {args.accelerator!r}; expected one of: {', '.join(sorted(ACCELERATORS))}")
    if args.databases < 1:
        parser.error(f"--databases must be at least 1, got {args.databases}")
    if not 0 <= args.warmup < 0.9:
        parser.error(f"--warmup must be a fraction in [0, 0.9), got {args.warmup}")
    if not 0 < args.scrape_interval <= 60:
        parser.error(f"--scrape-interval must be in (0, 60] seconds, got {args.scrape_interval}")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    for policy in policies:
        try:
            RoutingSpec(policy=policy)
        except ValueError as exc:
            parser.error(f"--policies: {policy!r} is not a valid policy ({_first_error(exc)}); "
                         f"built-ins: {', '.join(POLICY_NAMES)}")
    for required in ("random", "least-request", "prefix-cache-aware"):
        if required not in policies:
            parser.error(f"--policies must include {required} (the RESULT line compares against it)")
    args.policy_list = policies
    return args


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    return str(errors()[0]["msg"]) if callable(errors) else str(exc)


def run_scale(args: argparse.Namespace, config: EngineConfig,
              shared: tuple[list[SimRequest], float]) -> dict[str, object]:
    """The gateway-at-scale scenarios (``benchmarks.routing_scale``): decision cost per fleet
    size, then 1 vs 3 replicas with local or shared routing state."""
    costs = decision_costs(args.quick, args.seed)
    head = f"{'policy':<36} {'endpoints':>9} {'pool us/req':>11} {'decide us':>9} {'full-scan us':>12}"
    print("== routing work per request as the fleet grows (this machine, wall time) ==")
    print(head)
    print("-" * len(head))
    for c in costs:
        print(f"{c.policy:<36} {c.endpoints:>9} {c.pool_us:>11.1f} {c.decide_us:>9.1f} {c.full_us:>12.1f}")
    by = {(c.policy, c.endpoints): c for c in costs}

    def ratio(policy: str, field: str) -> float:
        return round(getattr(by[(policy, 512)], field) / getattr(by[(policy, 8)], field), 3)

    batch_bytes = 600  # one routed request's PREFIX_ADD (about 35 blocks of 8 bytes plus framing) in a batch
    rtt = measure_redis_batch_rtt(batch_bytes)
    rtt_source = "measured (real redis-server, XADD -> XREAD)" if rtt is not None else "ASSUMED (no redis-server)"
    rtt = rtt if rtt is not None else ASSUMED_REDIS_RTT_S
    delay = 0.005 + rtt  # the flush interval, then the trip through Redis
    requests, warmup_s = shared
    modes = {"1 replica": (1, False), "3 replicas, local state": (3, False), "3 replicas, shared state": (3, True)}
    summaries = {
        name: multi_replica(requests, config, policy="prefix-cache-aware", engines=args.engines, replicas=n, shared=s,
                            sync_delay_s=delay, scrape_interval_s=args.scrape_interval, warmup_s=warmup_s,
                            seed=args.seed, endpoint_state=sim_endpoint_state)
        for name, (n, s) in modes.items()
    }
    print(f"\n== shared-prefix, prefix-cache-aware behind several gateway replicas (sync delay {delay * 1000:.2f} ms: "
          f"5 ms flush + {rtt * 1000:.2f} ms Redis, {rtt_source}) ==")
    print(format_table("replicas", summaries))
    one = summaries["1 replica"].prefix_hit_fraction
    churn = run_churn(quick=args.quick, seed=args.seed)
    print("\n== cache churn (small KV caches, prefixes evicted): prefix-cache-aware:2,least-request by index ==")
    print(format_table("index", churn["summaries"]))  # type: ignore[arg-type]
    return {
        "kv_events_mean_ttft_ratio_vs_decisions": churn["kv_events_mean_ttft_ratio_vs_decisions"],
        "churn_mean_ttft_s": churn["mean_ttft_s"],
        "decide_ratio_least_request": ratio("least-request", "decide_us"),
        "decide_ratio_prefix_least_request": ratio("prefix-cache-aware:2,least-request", "decide_us"),
        "per_request_ratio_least_request": ratio("least-request", "pool_us"),
        "per_request_ratio_prefix_least_request": ratio("prefix-cache-aware:2,least-request", "pool_us"),
        "full_scan_ratio_least_request": ratio("least-request", "full_us"),
        "decide_us": {f"{c.policy}@{c.endpoints}": round(c.decide_us, 1) for c in costs},
        "shared_index_hit_rate_ratio_vs_one_replica": round(summaries["3 replicas, shared state"].prefix_hit_fraction / one, 4),
        "local_index_hit_rate_ratio_vs_one_replica": round(summaries["3 replicas, local state"].prefix_hit_fraction / one, 4),
        "replica_mean_ttft_s": {k: round(v.ttft.mean, 4) for k, v in summaries.items()},
        "redis_batch_rtt_ms": round(rtt * 1000, 3),
        "redis_rtt_source": rtt_source,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = EngineConfig(accelerator=args.accelerator, model_arch=MODEL)
    started = time.perf_counter()
    results: dict[str, dict[str, Summary]] = {}
    for workload in WORKLOADS:
        n = workload.n_quick if args.quick else workload.n_full
        requests = make_requests(workload, n, args.seed, args.databases)
        warmup_s = sorted(r.arrival_s for r in requests)[int(len(requests) * args.warmup)] if args.warmup > 0 else 0.0
        if workload.name == "shared-prefix":
            shared_requests = (requests, warmup_s)
        results[workload.name] = {
            policy: run_policy(
                policy,
                requests,
                config,
                engines=args.engines,
                seed=args.seed,
                scrape_interval_s=args.scrape_interval,
                warmup_s=warmup_s,
            )
            for policy in args.policy_list
        }
        title = f"{workload.name}: {n} requests at {workload.rate:g} req/s, measured after a {warmup_s:.1f} s warm-up"
        print(format_table(title, results[workload.name]))
        print()
    if args.plot:
        print(save_plot(results, Path(args.plot)))
    scale = run_scale(args, config, shared_requests)
    shared, unique, chat = results["shared-prefix"], results["unique"], results["chat"]
    result = {
        "prefix_vs_random_mean_ttft_reduction": _reduction(shared["prefix-cache-aware"].ttft.mean, shared["random"].ttft.mean),
        "prefix_vs_random_p99_ttft_reduction": _reduction(shared["prefix-cache-aware"].ttft.p99, shared["random"].ttft.p99),
        "unique_prompts_ttft_ratio_vs_least_request": round(
            unique["prefix-cache-aware"].ttft.mean / unique["least-request"].ttft.mean, 4
        ),
        "prefix_vs_least_request_mean_ttft_reduction": _reduction(
            shared["prefix-cache-aware"].ttft.mean, shared["least-request"].ttft.mean
        ),
        "shared_prefix_hit_fraction": {p: round(s.prefix_hit_fraction, 4) for p, s in shared.items()},
        "chat_mean_ttft_s": {p: round(s.ttft.mean, 4) for p, s in chat.items()},
        **scale,
        "engines": args.engines,
        "accelerator": args.accelerator,
        "quick": args.quick,
        "warmup_fraction": args.warmup,
        "seed": args.seed,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
