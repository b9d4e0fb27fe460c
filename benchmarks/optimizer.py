"""GPU-mix optimizer benchmark: solve time as problems grow, and mixed vs homogeneous plans.

    python -m benchmarks.optimizer --quick

Part 1, solve time: seeded synthetic problems of G GPU types x B bucket cells (one model,
random prices, caps on some pools, capacities falling with request size and a random speed
per GPU type), solved with CBC (PuLP) and HiGHS (highspy), fractional assignment (the
default), plus integral slices (Melange's exact form) for comparison. Wall time includes
building the solver's model.

Part 2, mixed workload (the paper's experiment, after Melange): deepseek-coder-6.7b (or
``--model``), a
chat-like stream (ShareGPT-like lengths, ``benchmarks.workloads`` ``unique_prompts``) plus a
text-to-SQL-like stream (``bird_sql``: ~1,000-token schemas, short answers), counted into the
gateway's log2 buckets. Roofline profiles for A10 and L20 are derived in this run
(``runtime_components.optimizer.derive``, discrete-event probes) on a coarse grid (cells round
up). The optimizer's mixed plan (pools a10 + l20) is compared with the best homogeneous plan
(the same ILP restricted to one pool). Each plan is then *checked by simulation*: the same
trace replayed through ``engine_sim.des`` on the plan's replicas, each request sent to a pool
by its cell's planned shares (seeded) and to the least-loaded replica in it; the SLO is met
when p99 TTFT and p99 TPOT over all requests meet the targets with no failed request. Prefix
caching is off in profiles and check alike (the profiles assume no reuse). All of this runs
twice: with profiles at the geometric middle of each bucket's range (the optimizer's default;
the RESULT's main keys) and at each bucket's upper bound (``upper_*`` keys: every request in a
cell within the profiled rate by construction), to show what the safer mode costs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from aibrix_spec.catalog import MODEL_ARCHS, accelerator
from aibrix_spec.components.optimizer import GpuProfile, OptimizerConfig, SloTargets
from aibrix_spec.token_buckets import BUCKETS, bucket_of
from benchmarks.workloads.arrivals import poisson
from benchmarks.workloads.generators import bird_sql, unique_prompts
from benchmarks.workloads.trace import to_sim_requests
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import Simulation
from runtime_components.optimizer.derive import derive_profile
from runtime_components.optimizer.errors import InfeasibleError
from runtime_components.optimizer.problem import ModelTerms, PlacementProblem, PoolTerms
from runtime_components.optimizer.report import format_plan, format_table
from runtime_components.optimizer.search import percentile
from runtime_components.optimizer.solve import Plan, plan_from_config, solve_placement

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_MODEL = "deepseek-coder-6.7b"  # the paper ran deepseek-coder-7b
SLO = SloTargets(ttft_p99_ms=2000, tpot_p99_ms=100)
POOLS = {"a10": "nvidia-a10", "l20": "nvidia-l20"}


# -- part 1: solve time ---------------------------------------------------------------------


def synthetic_problem(gpu_types: int, cells: int, seed: int, *, assignment: str = "fractional") -> PlacementProblem:
    rng = random.Random(seed)
    # Some pools are capped (caps bind in the larger problems); the first never is, so every
    # problem stays feasible.
    pools = tuple(PoolTerms(f"gpu{j}", round(rng.uniform(0.6, 4.0), 2), None if j == 0 else rng.choice([None, 8, 16]))
                  for j in range(gpu_types))
    grid = [(i, o) for i in BUCKETS[:10] for o in BUCKETS[:10]]
    rng.shuffle(grid)
    speed = [rng.uniform(0.5, 3.0) for _ in pools]
    demand = {("m", i, o): rng.uniform(0.05, 2.0) for i, o in grid[:cells]}
    capacity = {}
    for cell in demand:
        base = 3000.0 / (cell[1] ** 0.5 * cell[2] ** 0.8)
        for j, pool in enumerate(pools):
            capacity[(cell, pool.name)] = base * speed[j] * rng.uniform(0.6, 1.4)
    model = ModelTerms("m", 1, tuple(p.name for p in pools), 1, None)
    return PlacementProblem(pools, (model,), demand, capacity, assignment=assignment)  # type: ignore[arg-type]


def solve_times(quick: bool) -> tuple[list[list[str]], dict[str, float]]:
    sizes = [(2, 10), (4, 25), (8, 50), (8, 100)]
    repeats = 3 if quick else 10
    rows, at_8x100 = [], {}
    for gpu_types, cells in sizes:
        for assignment in ("fractional", "integral"):
            if assignment == "integral" and (gpu_types, cells) not in ((4, 25), (8, 100)):
                continue
            problem = synthetic_problem(gpu_types, cells, seed=gpu_types * 1000 + cells, assignment=assignment)
            row = [f"{gpu_types} x {cells}", assignment]
            costs = []
            for solver in ("cbc", "highs"):
                times = []
                for _ in range(1 if assignment == "integral" else repeats):
                    start = time.perf_counter()
                    plan = solve_placement(problem, solver=solver, time_limit_s=5.0 if quick else 30.0)
                    times.append(time.perf_counter() - start)
                    costs.append(plan.cost_per_hour)
                median = sorted(times)[len(times) // 2]
                row += [f"{median:.3f}", plan.status]
                if (gpu_types, cells) == (8, 100) and assignment == "fractional":
                    at_8x100[solver] = median
            row.append(f"{min(costs):.2f}")
            rows.append(row)
    return rows, at_8x100


# -- part 2: mixed workload -------------------------------------------------------------------


def mixed_trace(model: str, quick: bool, seed: int = 7) -> list[SimRequest]:
    duration = 240.0 if quick else 900.0
    chat_rate, sql_rate = 6.0, 3.0
    rng = random.Random(seed)
    chat = unique_prompts(poisson(chat_rate, rng, duration_s=duration), rng, model=model)
    sql = bird_sql(poisson(sql_rate, rng, duration_s=duration), rng, model=model)
    merged = sorted(chat + sql, key=lambda r: r.arrival_s)
    return to_sim_requests(merged)


def cell_of(model: str, request: SimRequest) -> tuple[str, int, int]:
    return (model, bucket_of(len(request.prompt_token_ids)), bucket_of(request.max_tokens))


def histogram(model: str, trace: list[SimRequest]) -> dict[tuple[str, int, int], float]:
    span = max(r.arrival_s for r in trace) - min(r.arrival_s for r in trace)
    counts: dict[tuple[str, int, int], float] = {}
    for request in trace:
        cell = cell_of(model, request)
        counts[cell] = counts.get(cell, 0.0) + 1.0
    return {cell: n / span for cell, n in counts.items()}


def profile_grid(workload: dict[tuple[str, int, int], float], quick: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The buckets to derive: coarse in quick mode (cells round up), else every bucket seen."""
    inputs = sorted({c[1] for c in workload})
    outputs = sorted({c[2] for c in workload})
    if not quick:
        return tuple(inputs), tuple(outputs)
    coarse_in = tuple(b for b in (256, 1024, 2048, 4096) if b <= max(inputs) * 2)
    coarse_out = tuple(b for b in (64, 256, 1024) if b <= max(outputs) * 4)
    return coarse_in, coarse_out


def optimizer_config(model: str, pools: list[str]) -> OptimizerConfig:
    return OptimizerConfig.model_validate({
        "pools": [{"name": p, "accelerator": POOLS[p], "costPerGpuHour": accelerator(POOLS[p]).price_per_hour}
                  for p in pools],
        "models": [{"name": model, "pools": pools, "minReplicas": 1, "slo": SLO.model_dump(by_alias=True)}],
        "workload": {"file": "unused"},
        "solver": "highs",
        "targetUtilization": 0.9,
    })


def simulate_plan(model: str, plan: Plan, trace: list[SimRequest], seed: int = 11) -> dict[str, Any]:
    configs, pool_of_engine = [], []
    for p in plan.pools:
        for _ in range(p.replicas):
            configs.append(EngineConfig(accelerator=p.accelerator, model_arch=model, enable_prefix_caching=False))
            pool_of_engine.append(p.pool)
    rng = random.Random(seed)

    def route(request: SimRequest, engines) -> int:  # type: ignore[no-untyped-def]
        shares = plan.routing.get(cell_of(model, request), {})
        pools = sorted(shares)
        pool = rng.choices(pools, [shares[p] for p in pools])[0] if pools else None
        candidates = [k for k, e in enumerate(engines) if pool is None or pool_of_engine[e.index] == pool]
        candidates = candidates or list(range(len(engines)))
        return min(candidates, key=lambda k: (engines[k].num_running + engines[k].num_waiting, k))

    start = time.perf_counter()
    records = Simulation(configs, route).run(trace)
    done = [r for r in records if r.error is None and r.ttft_s is not None]
    ttft = [r.ttft_s for r in done if r.ttft_s is not None]
    tpot = [r.tpot_s for r in done if r.tpot_s is not None]
    ok = sum(1 for r in done if r.ttft_s * 1000 <= SLO.ttft_p99_ms  # type: ignore[operator]
             and (r.tpot_s is None or r.tpot_s * 1000 <= SLO.tpot_p99_ms))  # type: ignore[operator]
    ttft_p99, tpot_p99 = percentile(ttft, 99), percentile(tpot, 99)
    return {
        "errors": len(records) - len(done),
        "ttft_p99_ms": ttft_p99 * 1000,
        "tpot_p99_ms": tpot_p99 * 1000,
        "attainment": ok / len(records),
        "slo_met": not (len(records) - len(done)) and ttft_p99 * 1000 <= SLO.ttft_p99_ms
        and tpot_p99 * 1000 <= SLO.tpot_p99_ms,  # type: ignore[operator]
        "sim_s": time.perf_counter() - start,
    }


def mixed_workload(model: str, quick: bool) -> dict[str, Any]:
    """The trace, its histogram, and for each profile mode the profiles, plans and checks."""
    trace = mixed_trace(model, quick)
    workload = histogram(model, trace)
    inputs, outputs = profile_grid(workload, quick)
    modes = {mode: evaluate_mode(model, trace, workload, inputs, outputs, quick, mode)
             for mode in ("geometric", "upper")}
    return {"trace": trace, "workload": workload, "grid": (inputs, outputs), "modes": modes}


def evaluate_mode(model: str, trace: list[SimRequest], workload: dict[tuple[str, int, int], float],
                  inputs: tuple[int, ...], outputs: tuple[int, ...], quick: bool, mode: str) -> dict[str, Any]:
    """Derive profiles at ``mode`` request lengths, plan mixed and homogeneous, simulate each plan."""
    start = time.perf_counter()
    profiles: dict[str, GpuProfile] = {
        pool: derive_profile(model, accel, slo=SLO, input_buckets=inputs, output_buckets=outputs,
                             rel_tol=0.15 if quick else 0.08, request_tokens=mode)
        for pool, accel in POOLS.items()
    }
    derive_s = time.perf_counter() - start
    plans: dict[str, Plan | None] = {}
    for name, pools in (("mixed a10+l20", ["a10", "l20"]), ("a10 only", ["a10"]), ("l20 only", ["l20"])):
        config = optimizer_config(model, pools)
        try:
            plans[name] = plan_from_config(config, {(model, p): profiles[p] for p in pools}, workload)
        except InfeasibleError as exc:
            print(f"{name}: infeasible: {exc}", file=sys.stderr)
            plans[name] = None
    checks = {name: simulate_plan(model, plan, trace) for name, plan in plans.items() if plan is not None}
    mixed = plans["mixed a10+l20"]
    homogeneous = [(n, p) for n, p in plans.items() if n != "mixed a10+l20" and p is not None]
    best_name, best = min(homogeneous, key=lambda item: item[1].cost_per_hour) if homogeneous else (None, None)
    return {
        "profiles": profiles, "derive_s": derive_s, "plans": plans, "checks": checks,
        "scaling": traffic_sweep(model, workload, profiles),
        "reduction": (1 - mixed.cost_per_hour / best.cost_per_hour) if mixed and best else 0.0,
        "slo_met": bool(mixed) and checks["mixed a10+l20"]["slo_met"],
        "mixed": mixed, "best": best, "best_slo_met": bool(best_name) and checks[best_name]["slo_met"],
    }


def traffic_sweep(model: str, workload: dict[tuple[str, int, int], float], profiles: dict[str, GpuProfile]) -> list[list[str]]:
    """Mixed vs best homogeneous cost as the same mix grows (ILP only; not simulated).

    Small plans round a few GPUs up, which can hide or exaggerate the gain of mixing; the
    sweep shows the trend the single simulated point sits on.
    """
    rows = []
    for scale in (1, 2, 4, 8):
        scaled = {cell: rate * scale for cell, rate in workload.items()}
        costs = {}
        for name, pools in (("mixed", ["a10", "l20"]), ("a10", ["a10"]), ("l20", ["l20"])):
            try:
                costs[name] = plan_from_config(optimizer_config(model, pools), {(model, p): profiles[p] for p in pools},
                                               scaled).cost_per_hour
            except InfeasibleError:
                costs[name] = float("inf")
        best = min(costs["a10"], costs["l20"])
        rows.append([f"{scale}x", f"{sum(scaled.values()):.1f}", f"{costs['mixed']:.2f}", f"{costs['a10']:.2f}",
                     f"{costs['l20']:.2f}", f"{100 * (1 - costs['mixed'] / best):.1f}%"])
    return rows


def profile_table(profiles: dict[str, GpuProfile]) -> str:
    rows = []
    first = next(iter(profiles.values()))
    for i, inp in enumerate(first.input_buckets):
        for j, out in enumerate(first.output_buckets):
            rates = [profiles[p].max_rps[i][j] for p in profiles]
            per_dollar = [r / accelerator(POOLS[p]).price_per_hour for p, r in zip(profiles, rates)]
            best = max(range(len(rates)), key=lambda k: per_dollar[k]) if max(per_dollar) > 0 else None
            rows.append([str(inp), str(out), *(f"{r:.2f}" for r in rates),
                         list(profiles)[best] if best is not None else "-"])
    return format_table(["input<=", "output<=", *(f"{p} req/s" for p in profiles), "cheaper per req"], rows,
                        right={0, 1, 2, 3})


def save_plot(scaling_rows: list[list[str]], result: dict[str, Any]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    frac = [r for r in scaling_rows if r[1] == "fractional"]
    left.plot([r[0] for r in frac], [float(r[2]) for r in frac], "o-", label="CBC (PuLP)")
    left.plot([r[0] for r in frac], [float(r[4]) for r in frac], "s-", label="HiGHS")
    left.set_xlabel("GPU types x bucket cells")
    left.set_ylabel("solve time (s)")
    left.set_title("Solve time, fractional assignment")
    left.legend()
    names = [n for n, p in result["plans"].items() if p is not None]
    costs = [result["plans"][n].cost_per_hour for n in names]
    colors = ["tab:green" if result["checks"][n]["slo_met"] else "tab:red" for n in names]
    right.bar(names, costs, color=colors)
    right.set_ylabel("USD per hour")
    right.set_title("Plan cost (green: SLO met in simulation)")
    fig.tight_layout()
    path = RESULTS / "optimizer.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def print_mode(model: str, mode: str, outcome: dict[str, Any], inputs: tuple[int, ...],
               outputs: tuple[int, ...]) -> None:
    what = "bucket upper bounds (safe for every request)" if mode == "upper" else "geometric middles of buckets (default)"
    print(f"\n== Profiles at {what} ==")
    print(f"Roofline profiles of {model} derived in {outcome['derive_s']:.1f} s on grid inputs {list(inputs)} x "
          f"outputs {list(outputs)}:")
    print(profile_table(outcome["profiles"]))
    rows = []
    for name, plan in outcome["plans"].items():
        if plan is None:
            rows.append([name, "infeasible", "", "", "", "", "", ""])
            continue
        check = outcome["checks"][name]
        rows.append([name, f"{plan.cost_per_hour:.2f}",
                     ", ".join(f"{p.pool} x{p.replicas}" for p in plan.pools if p.replicas),
                     f"{check['ttft_p99_ms']:.0f}", f"{check['tpot_p99_ms']:.1f}", f"{100 * check['attainment']:.1f}%",
                     str(check["errors"]), "yes" if check["slo_met"] else "NO"])
    print("\nPlans, each checked by replaying the trace on its replicas (discrete-event simulation)")
    print(format_table(["plan", "$/hour", "replicas", "p99 TTFT ms", "p99 TPOT ms", "requests in SLO", "errors",
                        "SLO met"], rows, right={1, 3, 4, 5, 6}))
    print(f"mixed vs best homogeneous: {100 * outcome['reduction']:.1f}% cheaper")
    print("\nThe same mix at higher traffic (ILP only, same profiles): $/hour")
    print(format_table(["traffic", "req/s", "mixed", "a10 only", "l20 only", "mixed saves"], outcome["scaling"],
                       right={1, 2, 3, 4, 5}))
    if outcome["mixed"] is not None:
        print("\nThe mixed plan:")
        print(format_plan(outcome["mixed"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optimizer")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a shorter trace, a coarse profile grid")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODEL_ARCHS),
                        help="model architecture of the mixed-workload experiment")
    args = parser.parse_args(argv)

    scaling_rows, at_8x100 = solve_times(args.quick)
    print("Solve time (median wall seconds, model build included)")
    print(format_table(["size", "assignment", "cbc s", "cbc status", "highs s", "highs status", "cost $/h"],
                       scaling_rows, right={2, 4, 6}))

    result = mixed_workload(args.model, args.quick)
    inputs, outputs = result["grid"]
    print(f"\nMixed workload: {len(result['trace'])} requests, {sum(result['workload'].values()):.2f} req/s over "
          f"{len(result['workload'])} cells; SLO p99 TTFT <= {SLO.ttft_p99_ms:g} ms, p99 TPOT <= {SLO.tpot_p99_ms:g} ms")
    for mode, outcome in result["modes"].items():
        print_mode(args.model, mode, outcome, inputs, outputs)
    plot = save_plot(scaling_rows, result["modes"]["geometric"])
    if plot:
        print(f"\nplot: {plot.relative_to(RESULTS.parent.parent)}")
    main_mode, upper = result["modes"]["geometric"], result["modes"]["upper"]
    summary = {
        "solve_s_8x100": round(max(at_8x100.values()), 4),
        "solve_s_8x100_cbc": round(at_8x100["cbc"], 4),
        "solve_s_8x100_highs": round(at_8x100["highs"], 4),
        "cost_reduction_vs_best_homogeneous": round(main_mode["reduction"], 4),
        "slo_met": main_mode["slo_met"],
        "mixed_cost_per_hour": round(main_mode["mixed"].cost_per_hour, 4) if main_mode["mixed"] else None,
        "best_homogeneous_cost_per_hour": round(main_mode["best"].cost_per_hour, 4) if main_mode["best"] else None,
        "best_homogeneous_slo_met": main_mode["best_slo_met"],
        "upper_cost_reduction_vs_best_homogeneous": round(upper["reduction"], 4),
        "upper_slo_met": upper["slo_met"],
        "upper_mixed_cost_per_hour": round(upper["mixed"].cost_per_hour, 4) if upper["mixed"] else None,
        "upper_best_homogeneous_slo_met": upper["best_slo_met"],
        "model": args.model,
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
