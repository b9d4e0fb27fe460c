"""Prefill/decode disaggregation against aggregated serving on the same GPUs.

    python -m benchmarks.pd --quick

Simulated engines (engine_sim's discrete-event simulation), Llama-3-70B on 24 H200 GPUs (three
8-GPU nodes; the issue's own example model, and 70B is where P/D is deployed), with 8 and 16
GPUs as smaller fleets (``--gpus`` picks the headline). Both modes use the same catalogue
entries and engine arguments; only the roles differ.

1. **Capacity**: aggregated serving with vLLM V1's API-server defaults on an H200 (chunked
   prefill, ``max_num_batched_tokens`` 8192, 1024 sequences), engines of TP 2, least-request
   routing, given a burst of long-prompt requests (``BURST_PER_GPU`` per GPU, so every engine
   sees the same wave whatever the fleet): completed requests per second.
2. **Load**: the long-prompt workload (3,000-5,000 prompt tokens, 200-400 output tokens,
   Poisson arrivals) at ``LOAD_FRACTION`` (80%) of that capacity: aggregated serving is busy.
3. **Split**: every P:D split of the GPUs (prefill and decode engines of TP 2, 4 or 8) whose
   capacity carries the offered rate runs a sweep trace (half the headline's length); the one
   with the lowest e2e P95 (no errors) is kept. A split whose prefill pool cannot carry the
   rate even at its engines' measured one-engine rate (``prefill_bounds``) is not simulated.
   The headline runs on a fresh trace (another seed), so the choice is not fitted to it.
4. **Rivals**: aggregated serving at the same load, in every variant a user could deploy on
   these GPUs: TP 2, 4 and 8, budget 8192 (the default) and 2048 (lower ITL tails). The
   baseline is the variant with the lowest e2e P95 on the headline trace (the strongest rival,
   chosen in-sample: an advantage to the baseline).
5. **Fleet size**: the same study (load, sweep, rivals; long prompts only) on 8 and 16 GPUs, in
   parallel processes. P/D's ITL gain depends on it: at 80% load prefill takes about two
   thirds of the GPUs, so on 8 GPUs the decode pool is one TP2 engine carrying every stream
   (mean ITL 40% lower only), while 24 GPUs leave room for a TP8 decode engine.
6. **Short prompts**: 100-400 prompt tokens, 50-300 output tokens, at the headline's request
   rate on the same stacks. Under P/D they are below ``minPromptTokens`` and skip prefill: they
   run whole on a decode engine, or, where the compiled ``shortPromptsOnPrefillPods`` is on
   (a prefill engine decodes at least as fast as every decode engine), on a prefill engine
   less loaded than every decode engine; the other setting is printed too. Aggregated serving
   spreads them on all the GPUs. This is the fair comparison for "short prompts must not pay
   for P/D": the same deployment, the same GPUs, the same traffic rate, with the traffic's mix
   shifted to short prompts. A mixed workload (long and short together) is printed too, with
   the short requests' latency apart. The full run (without ``--quick``) also re-chooses the
   split for short prompts (``short_prompt_resized``).
7. **Link**: the prefill-to-decode KV link is an assumption (``pd.DEFAULT_LINK_GBS``); the
   headline is rerun at a quarter of it.

Reductions are ``1 - P/D / aggregated``; ratios ``P/D / aggregated``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.pd_sim import (
    Fleet,
    Stats,
    aggregated,
    disaggregated,
    make_requests,
    run,
    saturation_capacity,
    short_on_prefill_default,
    stats,
)
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import RequestRecord
from runtime_components.engine_sim.pd import DEFAULT_LINK_GBS, DEFAULT_TRANSFER_LATENCY_S

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

#: the headline fleet: three 8-GPU nodes. P/D needs room for a decode pool of more than one
#: TP2 engine next to a prefill pool that carries the load; the fleet-size rows show 8 and 16.
GPUS = 24
FLEET_SIZES = (8, 16)  #: smaller fleets, long prompts only (the table "by fleet size")
TENSOR_PARALLEL = (2, 4, 8)  #: one H200 node: TP 8 at most, for both modes
BURST_PER_GPU = 25  #: capacity bursts grow with the fleet, so every engine sees the same wave
MIN_PROMPT_TOKENS = 512  # the example minPromptTokens
LOAD_FRACTION = 0.8
LONG = {"prompt": (3000, 5000), "output": (200, 400)}
SHORT = {"prompt": (100, 400), "output": (50, 300)}
#: vLLM V1's defaults for an API server on a >= 70 GiB GPU other than A100 (H100, H200)
ENGINE = EngineConfig(accelerator="nvidia-h200", model_arch="llama-3-70b", tensor_parallel=2,
                      max_model_len=8192, max_num_batched_tokens=8192, max_num_seqs=1024)  # fmt: skip
TARGETS = {"itl_mean_reduction_vs_aggregated": 0.5, "e2e_p95_reduction_vs_aggregated": 0.3,
           "short_prompt_e2e_ratio_vs_aggregated": 1.05}  # fmt: skip


def aggregated_variants(gpus: int = GPUS) -> list[Fleet]:
    out = []
    for tp in TENSOR_PARALLEL:
        for budget in (8192, 2048):
            fleet = aggregated(replace(ENGINE, tensor_parallel=tp), gpus, max_num_batched_tokens=budget)
            out.append(replace(fleet, name=f"aggregated {gpus // tp}xTP{tp} budget {budget}"))
    return out


def splits(gpus: int = GPUS) -> list[Fleet]:
    """Every way to cut the GPUs into prefill and decode engines of the TPs above."""
    out = []
    for p_tp in TENSOR_PARALLEL:
        for d_tp in TENSOR_PARALLEL:
            for p_gpus in range(p_tp, gpus, p_tp):
                d_gpus = gpus - p_gpus
                if d_gpus % d_tp:
                    continue
                prefill = replace(ENGINE, tensor_parallel=p_tp)
                decode = replace(ENGINE, tensor_parallel=d_tp)
                fleet = disaggregated(prefill, p_gpus // p_tp, decode, d_gpus // d_tp, MIN_PROMPT_TOKENS)
                out.append(replace(fleet, name=f"P/D {p_gpus // p_tp}xTP{p_tp} : {d_gpus // d_tp}xTP{d_tp}"))
    return out


def prefill_bounds(seed: int, shape: dict[str, tuple[int, int]]) -> dict[int, float]:
    """An upper bound on one prefill engine's rate, per TP: a burst of ``BURST_PER_GPU`` prompts
    per GPU with one output token each (what a prefill engine computes), on one engine. A pool
    of n such engines carries at most n times it, so a split below the offered rate by this
    bound is skipped without simulating it."""
    out = {}
    for tp in TENSOR_PARALLEL:
        burst = [replace(r, max_tokens=1) for r in trace(seed, float("inf"), BURST_PER_GPU * tp, shape, "b")]
        one = aggregated(replace(ENGINE, tensor_parallel=tp), tp, max_num_batched_tokens=ENGINE.max_num_batched_tokens)
        out[tp] = saturation_capacity(one, burst)
    return out


def trace(seed: int, rate: float, n: int, shape: dict[str, tuple[int, int]], prefix: str) -> list[SimRequest]:
    return make_requests(random.Random(seed), rate, n, shape["prompt"], shape["output"], prefix)


def merge(*traces: list[SimRequest]) -> list[SimRequest]:
    return sorted((r for t in traces for r in t), key=lambda r: (r.arrival_s, r.request_id))


def choose_split(gpus: int, sweep_trace: list[SimRequest], burst: list[SimRequest], rate: float, link_gbs: float,
                 bounds: dict[int, float], log: list[str] | None = None) -> tuple[Fleet, float]:  # fmt: skip
    """Among the splits whose capacity (``burst``) carries ``rate``, the one with the lowest e2e
    P95 and no errors on ``sweep_trace``. A split below the rate is unstable (its queue grows
    without bound), which a finite trace can hide, hence the capacity check. A split whose
    prefill pool is below the rate by ``bounds`` (``prefill_bounds``) is not simulated. The
    table goes to ``log``."""
    out = log if log is not None else []
    out.append(HEADER + f"{'capacity':>10}")
    results = []
    for fleet in splits(gpus):
        n_prefill = fleet.roles.count("prefill")
        bound = n_prefill * bounds[fleet.configs[0].tensor_parallel]
        if bound < rate:
            out.append(f"{fleet.name:<34}{fleet.split:>9}  prefill pool bound {bound:.2f} req/s: below the offered rate")
            continue
        capacity = saturation_capacity(fleet, burst, link_gbs)
        if capacity < rate:
            out.append(f"{fleet.name:<34}{fleet.split:>9}  capacity {capacity:.2f} req/s: below the offered rate")
            results.append((True, False, math.inf, fleet, capacity))
            continue
        s = stats(fleet.name, fleet, run(fleet, sweep_trace, link_gbs))
        results.append((False, s.errors > 0, s.e2e_p95, fleet, capacity))
        out.append(row(s) + f"{capacity:>10.2f}")
    if not results:
        raise SystemExit(f"no split of {gpus} GPUs has a prefill pool that could carry {rate:.2f} req/s")
    chosen = min(results, key=lambda r: (r[0], r[1], r[2], -r[4]))
    why = "carries the rate with" if not chosen[0] else "NO split carries the rate; picked"
    out.append(f"-> split: {chosen[3].name} ({chosen[3].split}): {why} the lowest e2e p95 without errors\n")
    return chosen[3], chosen[4]


@dataclass(frozen=True)
class LongStudy:
    """Long prompts on one fleet size: the load, the chosen split, every aggregated variant."""

    gpus: int
    capacity: float  #: aggregated serving's (the vLLM defaults), req/s
    rate: float  #: the offered load
    chosen: Fleet
    pd_capacity: float
    trace: list[SimRequest]
    variants: list[Fleet]
    agg_rows: list[Stats]
    base: Stats
    pd: Stats
    log: tuple[str, ...]  #: what the study printed (load, the split sweep)

    @property
    def base_fleet(self) -> Fleet:
        return self.variants[self.agg_rows.index(self.base)]


def long_study(gpus: int, seed: int, n: int, link_gbs: float) -> LongStudy:
    """Capacity, load, split sweep and the headline trace for ``gpus`` GPUs (a pure function of
    its arguments, so studies run in parallel processes)."""
    variants = aggregated_variants(gpus)
    burst = trace(seed, float("inf"), BURST_PER_GPU * gpus, LONG, "cap")
    capacity = saturation_capacity(variants[0], burst)
    rate = LOAD_FRACTION * capacity
    log = [f"Llama-3-70B on {gpus} x H200 (simulated); long prompts {LONG['prompt'][0]}-{LONG['prompt'][1]} "
           f"tokens, outputs {LONG['output'][0]}-{LONG['output'][1]}; minPromptTokens {MIN_PROMPT_TOKENS}",
           f"aggregated capacity ({variants[0].name}, least-request, burst of {len(burst)}): {capacity:.2f} "
           f"req/s; offered load {LOAD_FRACTION:.0%} of it = {rate:.2f} req/s (Poisson)",
           f"KV link: {link_gbs:g} GB/s + {DEFAULT_TRANSFER_LATENCY_S * 1000:g} ms per transfer (an assumption)\n",
           f"Split sweep, long prompts (its own trace of {n // 2} requests, same rate):"]
    bounds = prefill_bounds(seed, LONG)
    sweep_trace = trace(seed + 1, rate, n // 2, LONG, "s")  # half: it only ranks the splits
    chosen, pd_capacity = choose_split(gpus, sweep_trace, burst, rate, link_gbs, bounds, log)
    head = trace(seed + 2, rate, n, LONG, "l")
    agg_rows = [stats(f.name, f, run(f, head)) for f in variants]
    base = best(agg_rows)
    pd = stats(chosen.name, chosen, run(chosen, head, link_gbs))
    return LongStudy(gpus, capacity, rate, chosen, pd_capacity, head, variants, agg_rows, base, pd, tuple(log))


def best(rows: list[Stats]) -> Stats:
    """Lowest e2e P95 among rows without errors (all rows when every one has some)."""
    clean = [r for r in rows if r.errors == 0] or rows
    return min(clean, key=lambda r: r.e2e_p95)


HEADER = (f"{'mode':<34}{'GPUs':>9}{'reqs':>6}{'err':>5}{'TTFT mean':>11}{'p95':>8}{'ITL mean':>10}{'p95':>8}"
          f"{'e2e mean':>10}{'p95':>8}{'req/s':>7}{'tok/s':>8}")  # fmt: skip


def row(s: Stats, note: str = "") -> str:
    return (f"{s.label:<34}{s.split:>9}{s.requests:>6}{s.errors:>5}{s.ttft_mean:>10.3f}s{s.ttft_p95:>7.3f}s"
            f"{s.itl_mean * 1000:>8.1f}ms{s.itl_p95 * 1000:>6.1f}ms{s.e2e_mean:>9.2f}s{s.e2e_p95:>7.2f}s"
            f"{s.req_per_s:>7.2f}{s.tok_per_s:>8.0f}{note}")  # fmt: skip


def only(records: list[RequestRecord], prefix: str) -> list[RequestRecord]:
    return [r for r in records if r.request_id.startswith(prefix)]


def plot(base: Stats, pd: Stats, slow_link: Stats) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for s, label, style in ((base, f"aggregated ({base.label.removeprefix('aggregated ')})", "-"),
                            (pd, f"P/D {pd.split}", "-"), (slow_link, f"P/D {pd.split}, link / 4", ":")):  # fmt: skip
        for axis, values, scale in ((a, s.ttfts, 1.0), (b, s.itls, 1000.0)):
            ordered = sorted(v * scale for v in values)
            n = len(ordered)
            axis.plot(ordered, [(i + 1) / n for i in range(n)], style, label=label)
    a.set_xlabel("TTFT (s)")
    a.set_title("TTFT, long prompts")
    b.set_xscale("log")
    b.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    b.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    b.set_xlabel("inter-token latency (ms, log)")
    b.set_title("ITL, long prompts")
    for axis in (a, b):
        axis.set_ylabel("CDF")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "pd.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pd")
    parser.add_argument("--quick", action="store_true", help="400-request traces (about a minute)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=0, help="requests per trace (default 400 quick, 1500 full)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--gpus", type=int, default=GPUS,
                        help=f"the headline fleet, a multiple of 8 (default {GPUS}); smaller sizes of {FLEET_SIZES} "
                        "run too, long prompts only")  # fmt: skip
    parser.add_argument("--link-gbs", type=float, default=DEFAULT_LINK_GBS,
                        help=f"prefill-to-decode KV link, GB/s (default {DEFAULT_LINK_GBS:g})")  # fmt: skip
    args = parser.parse_args(argv)
    if args.link_gbs <= 0:
        parser.error(f"--link-gbs must be > 0, got {args.link_gbs}")
    if args.gpus < 8 or args.gpus % 8:
        parser.error(f"--gpus must be a multiple of 8 (whole H200 nodes, TP up to 8), got {args.gpus}")
    if args.requests < 0 or 0 < args.requests < 20:
        parser.error(f"--requests must be >= 20, got {args.requests}")
    n = args.requests or (400 if args.quick else 1500)
    started = time.perf_counter()

    # every fleet size's study at once, one process each (pure functions of their arguments)
    sizes = [g for g in FLEET_SIZES if g < args.gpus] + [args.gpus]
    with ProcessPoolExecutor(max_workers=min(len(sizes), os.cpu_count() or 1)) as pool:
        studies = list(pool.map(partial(long_study, seed=args.seed, n=n, link_gbs=args.link_gbs), sizes))
    study = studies[-1]
    print("\n".join(study.log))
    rate, chosen, head, base, pd = study.rate, study.chosen, study.trace, study.base, study.pd
    capacity, pd_capacity, variants, base_fleet = study.capacity, study.pd_capacity, study.variants, study.base_fleet
    print("Long prompts (headline trace):")
    print(HEADER)
    for s in study.agg_rows:
        print(row(s, "  <- baseline" if s is base else ""))
    slow = stats(chosen.name + " link/4", chosen, run(chosen, head, args.link_gbs / 4))
    print(row(pd))
    print(row(slow, f"  (link {args.link_gbs / 4:g} GB/s)"))

    spill = short_on_prefill_default(chosen)
    other = "on prefill pods" if not spill else "decode only"
    short = trace(args.seed + 3, rate, n, SHORT, "x")
    print(f"\nShort prompts only ({SHORT['prompt'][0]}-{SHORT['prompt'][1]} tokens, same rate {rate:.2f} req/s), "
          f"the same stacks: under P/D they skip prefill and run on the {chosen.split.split(':')[1]} decode GPUs"
          + (", or on a prefill engine less loaded than every decode engine" if spill else "")
          + f" (shortPromptsOnPrefillPods compiles to {str(spill).lower()} for this split: a prefill engine "
          + ("decodes at least as fast as a decode engine" if spill else "decodes slower than the decode engine")
          + "):")  # fmt: skip
    print(HEADER)
    short_agg = stats(base.label, base_fleet, run(base_fleet, short))
    short_by_spill = {flag: stats(chosen.name + ("" if flag == spill else f" {other}"), chosen,
                                  run(chosen, short, args.link_gbs, short_on_prefill=flag)) for flag in (spill, not spill)}
    short_pd = short_by_spill[spill]
    print(row(short_agg))
    print(row(short_pd))
    print(row(short_by_spill[not spill], f"  (shortPromptsOnPrefillPods: {str(not spill).lower()})"))
    short_resized: dict[str, Any] | None = None
    if not args.quick:  # a second sweep, on short prompts: the full run only
        print("Short prompts only, each mode re-tuned for them on the same GPUs (split by the same sweep on its own "
              "trace, aggregated's best variant):")  # fmt: skip
        short_burst = trace(args.seed + 7, float("inf"), BURST_PER_GPU * args.gpus, SHORT, "z")
        short_split, _ = choose_split(args.gpus, trace(args.seed + 6, rate, n // 2, SHORT, "y"), short_burst, rate,
                                      args.link_gbs, prefill_bounds(args.seed + 7, SHORT))
        print(f"-> split: {short_split.name} ({short_split.split})")
        print(HEADER)
        short_agg_rows = [stats(f.name, f, run(f, short)) for f in variants]
        short_base = best(short_agg_rows)
        short_pd_resized = stats(short_split.name, short_split, run(short_split, short, args.link_gbs))
        print(row(short_base))
        print(row(short_pd_resized))
        short_resized = {
            "split": short_split.split,
            "split_engines": short_split.name.removeprefix("P/D "),
            "baseline": short_base.label,
            "e2e_ratio_vs_aggregated": round(short_pd_resized.e2e_mean / short_base.e2e_mean, 4),
            "errors": short_pd_resized.errors,
        }

    mixed = merge(trace(args.seed + 4, rate / 2, n // 2, LONG, "l"), trace(args.seed + 5, rate / 2, n // 2, SHORT, "x"))
    print(f"\nMixed (half long, half short, {rate:.2f} req/s in all), the same stacks; rows: all requests, then the "
          "short ones:")  # fmt: skip
    print(HEADER)
    mixed_rows = []
    for fleet, label, flag in ((base_fleet, base.label, spill), (chosen, chosen.name, spill),
                               (chosen, f"{chosen.name} {other}", not spill)):
        records = run(fleet, mixed, args.link_gbs, short_on_prefill=flag)
        mixed_rows.append((stats(label, fleet, records), stats(label + " [short]", fleet, only(records, "x"))))
        print(row(mixed_rows[-1][0]))
        print(row(mixed_rows[-1][1]))

    print(f"\nBy fleet size, long prompts only (each size: its own capacity, {LOAD_FRACTION:.0%} load, split sweep and "
          "strongest aggregated variant, as above):")  # fmt: skip
    print(f"{'GPUs':>5}{'req/s':>8}  {'P/D split':<22}{'baseline':<32}{'ITL ms agg/PD':>15}{'ITL cut':>9}"
          f"{'e2e p95 cut':>13}{'TTFT x':>8}")  # fmt: skip
    by_size: dict[str, dict[str, Any]] = {}
    for size_study in studies:
        b, p = size_study.base, size_study.pd
        by_size[str(size_study.gpus)] = {
            "split": size_study.chosen.name.removeprefix("P/D "),
            "baseline": b.label.removeprefix("aggregated "),
            "offered_req_per_s": round(size_study.rate, 3),
            "itl_mean_reduction_vs_aggregated": round(1 - p.itl_mean / b.itl_mean, 4),
            "e2e_p95_reduction_vs_aggregated": round(1 - p.e2e_p95 / b.e2e_p95, 4),
            "ttft_mean_ratio_vs_aggregated": round(p.ttft_mean / b.ttft_mean, 4),
        }
        r = by_size[str(size_study.gpus)]
        print(f"{size_study.gpus:>5}{size_study.rate:>8.2f}  {r['split']:<22}{r['baseline']:<32}"
              f"{b.itl_mean * 1000:>8.1f}/{p.itl_mean * 1000:<6.1f}{r['itl_mean_reduction_vs_aggregated']:>9.1%}"
              f"{r['e2e_p95_reduction_vs_aggregated']:>13.1%}{r['ttft_mean_ratio_vs_aggregated']:>8.2f}")  # fmt: skip

    result: dict[str, Any] = {
        "itl_mean_reduction_vs_aggregated": round(1 - pd.itl_mean / base.itl_mean, 4),
        "e2e_p95_reduction_vs_aggregated": round(1 - pd.e2e_p95 / base.e2e_p95, 4),
        "ttft_mean_ratio_vs_aggregated": round(pd.ttft_mean / base.ttft_mean, 4),
        "itl_p50_ms": {"aggregated": round(base.itl_p50 * 1000, 2), "pd": round(pd.itl_p50 * 1000, 2)},
        "itl_over_100ms_fraction": {"aggregated": round(sum(g > 0.1 for g in base.itls) / max(1, len(base.itls)), 4),
                                    "pd": round(sum(g > 0.1 for g in pd.itls) / max(1, len(pd.itls)), 4)},
        "short_prompt_e2e_ratio_vs_aggregated": round(short_pd.e2e_mean / short_agg.e2e_mean, 4),
        "short_prompts_on_prefill_pods": spill,
        "short_prompt_e2e_ratio_on_prefill_pods_vs_aggregated": round(
            short_by_spill[True].e2e_mean / short_agg.e2e_mean, 4),
        "short_prompt_e2e_ratio_decode_only_vs_aggregated": round(short_by_spill[False].e2e_mean / short_agg.e2e_mean, 4),
        "short_prompt_e2e_p95_ratio_vs_aggregated": round(short_pd.e2e_p95 / short_agg.e2e_p95, 4),
        "short_prompt_resized": short_resized,
        "mixed_short_e2e_ratio_vs_aggregated": round(mixed_rows[1][1].e2e_mean / mixed_rows[0][1].e2e_mean, 4),
        # the price of shortPromptsOnPrefillPods: a short prompt on a prefill engine may share a
        # step with a long prefill
        "mixed_short_ttft_mean_s": {"aggregated": round(mixed_rows[0][1].ttft_mean, 4),
                                    "pd": round(mixed_rows[1][1].ttft_mean, 4),
                                    f"pd_{other.replace(' ', '_')}": round(mixed_rows[2][1].ttft_mean, 4)},
        "mixed_e2e_p95_reduction_vs_aggregated": round(1 - mixed_rows[1][0].e2e_p95 / mixed_rows[0][0].e2e_p95, 4),
        "errors": pd.errors + slow.errors + sum(s.errors for s in short_by_spill.values())
        + (short_resized["errors"] if short_resized else 0) + mixed_rows[1][0].errors + mixed_rows[2][0].errors,
        "aggregated_errors": base.errors + short_agg.errors + mixed_rows[0][0].errors,
        "split": chosen.split,
        "split_engines": chosen.name.removeprefix("P/D "),
        "baseline": base.label,
        "model": "llama-3-70b",
        "accelerator": "nvidia-h200",
        "gpus": args.gpus,
        "capacity_req_per_s": round(capacity, 3),
        "pd_capacity_req_per_s": round(pd_capacity, 3),
        "offered_req_per_s": round(rate, 3),
        "load_fraction": LOAD_FRACTION,
        "link_gbs": args.link_gbs,
        "link_latency_s": DEFAULT_TRANSFER_LATENCY_S,
        "link_quarter": {
            "link_gbs": args.link_gbs / 4,
            "itl_mean_reduction_vs_aggregated": round(1 - slow.itl_mean / base.itl_mean, 4),
            "e2e_p95_reduction_vs_aggregated": round(1 - slow.e2e_p95 / base.e2e_p95, 4),
            "ttft_mean_ratio_vs_aggregated": round(slow.ttft_mean / base.ttft_mean, 4),
        },
        "by_fleet_size": by_size,
        "requests_per_trace": n,
        "seed": args.seed,
    }
    missed = [k for k, target in TARGETS.items()
              if (result[k] > target if k.endswith("ratio_vs_aggregated") else result[k] < target)]  # fmt: skip
    result["targets_missed"] = missed + (["errors"] if result["errors"] else [])
    print(f"\nP/D {chosen.split} vs {base.label}: mean ITL {result['itl_mean_reduction_vs_aggregated']:.1%} lower "
          f"(target 50%), e2e P95 {result['e2e_p95_reduction_vs_aggregated']:.1%} lower (target 30%), mean TTFT "
          f"x{result['ttft_mean_ratio_vs_aggregated']:.2f}, short-prompt e2e "
          f"x{result['short_prompt_e2e_ratio_vs_aggregated']:.3f} (target <= 1.05)")  # fmt: skip
    lq = result["link_quarter"]
    print(f"at a quarter of the link ({lq['link_gbs']:g} GB/s): ITL {lq['itl_mean_reduction_vs_aggregated']:.1%} lower, "
          f"e2e P95 {lq['e2e_p95_reduction_vs_aggregated']:.1%} lower, "
          f"TTFT x{lq['ttft_mean_ratio_vs_aggregated']:.2f}")  # fmt: skip
    sr = result["short_prompt_resized"]
    resized = f"x{sr['e2e_ratio_vs_aggregated']:.3f} with the split re-chosen for them ({sr['split']}), " if sr else ""
    print(f"short prompts: x{result['short_prompt_e2e_ratio_vs_aggregated']:.3f} on the long-prompt stack "
          f"({chosen.split}), {resized}x{result['mixed_short_e2e_ratio_vs_aggregated']:.3f} mixed with long prompts")
    print("targets missed: " + (", ".join(result["targets_missed"]) or "none"))
    path = None if args.no_plot else plot(base, pd, slow)
    if path:
        print(f"plot: {path.relative_to(REPO)}")
    print(f"(simulated time; {time.perf_counter() - started:.0f} s of wall time)")
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
