"""Simulated-engine benchmark: calibration error, and how many HTTP engines one process sustains.

    python -m benchmarks.engine_sim --quick

1. Calibration: the roofline model's prediction for every published vLLM measurement in
   ``runtime_components.engine_sim.calibration`` and its relative error, the fit set
   (decode latency and batched-prefill TTFT; ``calibration_max_error``, in-sample) apart from
   the held-out TTFT points never used to fit (``calibration_heldout_max_error``, target <= 0.3).
2. Scale: ``aibrix-engine-sim --engines N`` runs in its own process (one event loop); this
   process replays a Poisson trace of short requests at ``per_engine_rate x N`` req/s with
   the load client, round-robin over the engines, at speed-up 1. The baseline, in the same
   run, is the discrete-event simulation of the same trace on the same engines (no HTTP, no
   event loop): what the engines would do on an unloaded machine. N is *sustained* when no
   request fails, the achieved rate is at least 90% of the baseline's, the client's mean
   TPOT stays within 25% of the baseline's and its mean TTFT within 25% (of the part past the
   serving path's fixed ``request_overhead_s``, which both pay) plus 10 ms of HTTP overhead
   (so the event loop is not falling behind the simulated GPUs). ``engines`` in the
   RESULT line is the largest N sustained and ``req_per_s`` the request rate it carried.
3. DES speed: simulated requests per wall second of the discrete-event simulator.

Numbers measured on a shared machine are inflated by everything else running there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.workloads import make_trace, to_sim_requests
from runtime_components.common.processes import stop_process
from runtime_components.engine_sim import EngineConfig, Simulation, summarize
from runtime_components.engine_sim.calibration import calibration_report
from runtime_components.engine_sim.perf import DEFAULT_EFFICIENCY as ENGINE_EFFICIENCY
from runtime_components.loadgen.client import replay
from runtime_components.loadgen.report import summarize as summarize_load
from runtime_components.loadgen.trace import TraceRequest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
HTTP_ALLOWANCE_MS = 10.0  # request parsing, SSE framing and loopback round trips, per request
ENGINE = EngineConfig(accelerator="nvidia-a100-80gb", model_arch="llama-3-8b")


def short_trace(n_engines: int, rate_per_engine: float, duration_s: float, seed: int) -> list[TraceRequest]:
    """Short prompts and answers so the run measures the serving loop, not long prefills."""
    rate = rate_per_engine * n_engines
    trace = make_trace(kind="unique", n=max(1, int(rate * duration_s)), rate=rate, seed=seed, model="llama-3-8b")
    return [
        TraceRequest(r.request_id, r.arrival_s, r.model, r.prompt[:600], min(r.max_tokens, 64)) for r in trace
    ]


def des_baseline(trace: list[TraceRequest], n_engines: int) -> dict[str, float]:
    index = {r.request_id: i for i, r in enumerate(trace)}
    sim = Simulation([ENGINE] * n_engines, lambda req, engines: index[req.request_id] % len(engines))
    s = summarize(sim.run(to_sim_requests(trace)))
    return {"tpot_ms": s.tpot.mean * 1000, "ttft_ms": s.ttft.mean * 1000, "req_per_s": s.req_per_s}


def http_run(trace: list[TraceRequest], n_engines: int, duration_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        endpoints_file = Path(tmp) / "endpoints.json"
        cmd = [
            sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", str(n_engines),
            "--endpoints-file", str(endpoints_file), "--duration", str(duration_s + 60),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        try:
            assert proc.stdout is not None
            for _ in range(n_engines + 1):
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"engine process exited: {proc.stderr.read() if proc.stderr else ''}")
            urls = [e["url"] for e in json.loads(endpoints_file.read_text())]
            cpu0 = _cpu_seconds(proc.pid)
            records, wall = asyncio.run(replay(trace, urls, duration_s=duration_s, request_timeout_s=60.0))
            cpu = _cpu_seconds(proc.pid) - cpu0
        finally:
            stop_process(proc, grace_s=15)
    s = summarize_load(records, wall)
    return {
        "offered_req_per_s": len(trace) / max(trace[-1].arrival_s, 1e-9),
        "req_per_s": s["req_per_s"],
        "errors": s["errors"],
        "tpot_ms": s["tpot_ms"]["mean"],
        "ttft_ms": s["ttft_ms"]["mean"],
        "engine_cpu_fraction": cpu / wall,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def des_speed(seed: int) -> float:
    trace = to_sim_requests(make_trace(kind="chat", n=3000, rate=60.0, seed=seed))
    started = time.perf_counter()
    Simulation([ENGINE] * 8, lambda req, engines: min(range(len(engines)), key=lambda i: engines[i].num_running)).run(
        trace
    )
    return len(trace) / (time.perf_counter() - started)


def plot(calibration: list[dict[str, Any]], scale: list[dict[str, Any]]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [c["label"] + ("" if c["fit"] else " (held out)") for c in calibration]
    a.barh(labels, [c["error"] * 100 for c in calibration])
    a.axvline(30, color="red", linestyle="--", label="30% held-out target")
    a.set_xlabel("relative error (%)")
    a.set_title("roofline vs published vLLM")
    a.legend()
    b.plot([r["engines"] for r in scale], [r["tpot_ratio"] for r in scale], marker="o")
    b.axhline(1.25, color="red", linestyle="--", label="sustained limit")
    b.set_xlabel("engines in one process")
    b.set_ylabel("client TPOT / DES TPOT")
    b.set_title("HTTP engines vs baseline")
    b.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "engine_sim.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine_sim")
    parser.add_argument("--quick", action="store_true", help="8 and 32 engines, 10 s each (about a minute)")
    parser.add_argument("--rate-per-engine", type=float, default=1.5, help="offered req/s per engine")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes, duration = ([8, 32], 10.0) if args.quick else ([8, 16, 32, 48, 64], 20.0)

    calibration = [
        {"label": p.measurement.label, "measured_ms": p.measurement.measured_s * 1000,
         "predicted_ms": p.predicted_s * 1000, "error": p.error, "source": p.measurement.source,
         "fit": p.measurement.fit, "kind": p.measurement.kind}
        for p in calibration_report()
    ]  # fmt: skip
    print("Calibration against published vLLM measurements (sources: runtime_components/engine_sim/calibration.py)")
    print(f"{'measurement':<40}{'kind':<12}{'set':<10}{'measured ms':>12}{'predicted ms':>14}{'error':>8}")
    for c in sorted(calibration, key=lambda c: not c["fit"]):
        print(f"{c['label']:<40}{c['kind']:<12}{'fit' if c['fit'] else 'held out':<10}{c['measured_ms']:>12.2f}"
              f"{c['predicted_ms']:>14.2f}{c['error'] * 100:>7.1f}%")  # fmt: skip
    in_sample = max(c["error"] for c in calibration if c["fit"])
    held_out = max(c["error"] for c in calibration if not c["fit"])
    print(f"max error: in-sample {in_sample:.1%}, held out {held_out:.1%} (target <= 30%)")

    print(f"\nEngines in one process (A100-80GB, llama-3-8b, speed-up 1, {args.rate_per_engine} req/s per engine)")
    print(f"{'engines':>8}{'offered/s':>11}{'done/s':>9}{'errors':>8}{'TPOT ms':>10}{'DES TPOT':>10}{'ratio':>8}"
          f"{'TTFT ms':>10}{'DES TTFT':>10}{'CPU':>7}  sustained")  # fmt: skip
    scale: list[dict[str, Any]] = []
    for n in sizes:
        trace = short_trace(n, args.rate_per_engine, duration, args.seed)
        base = des_baseline(trace, n)
        run = http_run(trace, n, duration)
        ratio = (run["tpot_ms"] or float("inf")) / base["tpot_ms"]
        # 25% on the engine part of TTFT only: the serving path's fixed cost is in both and must
        # not widen the tolerance
        fixed_ms = ENGINE_EFFICIENCY.request_overhead_s * 1000
        ttft_ok = (run["ttft_ms"] or float("inf")) <= fixed_ms + 1.25 * (base["ttft_ms"] - fixed_ms) + HTTP_ALLOWANCE_MS
        sustained = run["errors"] == 0 and run["req_per_s"] >= 0.9 * base["req_per_s"] and ratio <= 1.25 and ttft_ok
        row = {"engines": n, **run, "des_tpot_ms": base["tpot_ms"], "des_ttft_ms": base["ttft_ms"],
               "des_req_per_s": base["req_per_s"], "tpot_ratio": ratio, "sustained": sustained}  # fmt: skip
        scale.append(row)
        print(f"{n:>8}{run['offered_req_per_s']:>11.1f}{run['req_per_s']:>9.1f}{run['errors']:>8}"
              f"{run['tpot_ms'] or float('nan'):>10.2f}{base['tpot_ms']:>10.2f}{ratio:>8.2f}"
              f"{run['ttft_ms'] or float('nan'):>10.1f}{base['ttft_ms']:>10.1f}"
              f"{run['engine_cpu_fraction'] * 100:>6.0f}%  {'yes' if sustained else 'NO'}")  # fmt: skip

    speed = des_speed(args.seed)
    print(f"\nDiscrete-event simulator: {speed:,.0f} simulated requests per wall second (8 engines, chat trace)")
    path = plot(calibration, scale)
    if path:
        print(f"plot: {path.relative_to(REPO)}")
    print("(timings measured on a shared machine; other load inflates TPOT ratios and CPU shares)")
    best = max((r for r in scale if r["sustained"]), key=lambda r: r["engines"], default=None)
    result = {
        "engines": best["engines"] if best else 0,
        "req_per_s": round(best["req_per_s"], 2) if best else 0.0,
        "calibration_max_error": round(in_sample, 4),
        "calibration_heldout_max_error": round(held_out, 4),
        "calibration_errors": {c["label"]: round(c["error"], 4) for c in calibration},
        "scale": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in scale
        ],
        "des_sim_req_per_wall_s": round(speed, 1),
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
