"""GPU diagnostics benchmark: every detector scored per fault class and GPU against ground truth.

    python -m benchmarks.diag --quick

Every file in examples/faults/ is one fault class. Its `# truth:` line, written from the fault
itself and naming no detector's checks, says which GPU is faulty (or that only the node can be
flagged, or that nothing is wrong) and how badly; `benchmarks/diag_cases.py` is the one parser.
Each file runs through aibrix-diag's checks and, in the same run, through a baseline: a typical
four-check nvidia-smi health script (NVML answers, GPU count, uncorrected volatile ECC,
temperature above a fixed 85 C) re-implemented on the same fake NVML. Both are scored the same
way, on what they flagged and where, never on check names: a fault is detected when the faulty
GPU is flagged (a node-wide flag counts, and then also flags every healthy GPU of the node);
`false_positive_gpus` counts healthy GPUs flagged over every file, the healthy node included.
Pass time: a full one-shot pass (nvmlInit, event-set registration, every check on 8 GPUs,
shutdown) against the mock, median and p95; and the daemon's steady-state pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibrix_spec.components.diag import DiagConfig, FaultFile
from benchmarks.diag_cases import FaultCase, Truth, load_cases
from runtime_components.diag.fake_nvml import FakeNvml
from runtime_components.diag.report import Report, Status
from runtime_components.diag.session import DiagSession

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BASELINE_TEMPERATURE_C = 85


@dataclass(frozen=True)
class Verdict:
    """What one detector said about a node: whether NVML answered, and its worst flag per GPU
    (key None: the node as a whole), warn or fail only."""

    nvml: bool
    flags: dict[int | None, str]


@dataclass(frozen=True)
class Score:
    """One detector on one fault class, against the file's ground truth."""

    detected: bool | None  #: flagged the faulty GPU (the node, for a node fault); None: not a fault
    severity_ok: bool | None  #: flagged it at the truth's severity; None: not a fault or not detected
    false_positive_gpus: tuple[int, ...]  #: healthy GPUs it flagged (a node-wide flag flags them all)


def worst(*statuses: str | None) -> str | None:
    present = [s for s in statuses if s is not None]
    return max(present, key=["warn", "fail"].index) if present else None


def score(truth: Truth, verdict: Verdict, gpu_count: int) -> Score:
    """Did it flag the faulty GPU, and which healthy GPUs did it flag?

    A node-wide flag on a single-GPU fault detects it but drains the healthy GPUs too, so they
    count as false positives. For a node fault (no GPU can be named) any flag detects it and a
    flag on a GPU NVML can name is a false positive (those GPUs are healthy).
    """
    node_flag = verdict.flags.get(None)
    gpu_flags = {g for g in verdict.flags if g is not None}
    everyone = set(range(gpu_count)) if node_flag else set()
    if truth.scope == "gpu":
        hit = worst(verdict.flags.get(truth.gpu), node_flag)
        wrong = (gpu_flags | everyone) - {truth.gpu}
    elif truth.scope == "node":
        hit = worst(*verdict.flags.values())
        wrong = gpu_flags
    else:  # healthy, or no NVML at all: nothing to detect
        return Score(None, None, tuple(sorted(gpu_flags | everyone)))
    return Score(hit is not None, None if hit is None else hit == truth.severity, tuple(sorted(wrong)))


def run_diag(faults: FaultFile) -> Report:
    config = DiagConfig(expected_gpu_count=faults.gpu_count)
    with DiagSession(FakeNvml(faults), config, node=faults.node) as session:
        return session.run_pass(xid_wait_ms=0)


def diag_verdict(report: Report) -> Verdict:
    flags: dict[int | None, str] = {}
    for r in report.results:
        if r.status is not Status.OK:
            flags[r.gpu] = worst(flags.get(r.gpu), r.status.label) or r.status.label
    return Verdict(report.nvml_available, flags)


def run_baseline(faults: FaultFile) -> Verdict:
    """The four-check script on the same fake NVML; it has one verdict, fail."""
    nv = FakeNvml(faults)
    flags: dict[int | None, str] = {}
    try:
        nv.nvmlInit()
    except nv.NVMLError_LibraryNotFound:
        return Verdict(False, {})
    except nv.NVMLError:
        return Verdict(True, {None: "fail"})  # nvidia-smi itself fails: the script flags the node
    count = nv.nvmlDeviceGetCount()
    if count < faults.gpu_count:
        flags[None] = "fail"
    for index in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            if nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU) > BASELINE_TEMPERATURE_C:
                flags[index] = "fail"
            errors = nv.nvmlDeviceGetTotalEccErrors(handle, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
            if errors:
                flags[index] = "fail"
        except nv.NVMLError_NotSupported:
            continue
        except nv.NVMLError:
            flags[index] = "fail"
    nv.nvmlShutdown()
    return Verdict(True, flags)


def describe(verdict: Verdict) -> str:
    """The table cell: what a detector flagged, e.g. `gpu2:fail` or `node:fail,gpu3:warn`."""
    if not verdict.nvml:
        return "no-nvml"
    ordered = sorted(verdict.flags.items(), key=lambda kv: -1 if kv[0] is None else kv[0])
    cells = [f"{'node' if g is None else f'gpu{g}'}:{s}" for g, s in ordered]
    return ",".join(cells) or "ok"


def time_passes(faults: FaultFile, repeats: int) -> tuple[list[float], list[float], int]:
    """(one-shot pass ms, steady-state daemon pass ms, NVML calls per steady pass)."""
    one_shot = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_diag(faults)
        one_shot.append((time.perf_counter() - start) * 1000)
    nv = FakeNvml(faults)
    steady = []
    with DiagSession(nv, DiagConfig(expected_gpu_count=faults.gpu_count), node=faults.node) as session:
        session.run_pass(xid_wait_ms=0)
        calls_before = nv.calls
        for _ in range(repeats):
            start = time.perf_counter()
            session.run_pass(xid_wait_ms=0)
            steady.append((time.perf_counter() - start) * 1000)
        calls = (nv.calls - calls_before) // repeats
    return one_shot, steady, calls


DETECTORS = ("aibrix-diag", "baseline")


def evaluate(cases: list[FaultCase]) -> list[dict[str, Any]]:
    """One row per fault file: each detector's verdict and its score against the truth."""
    rows = []
    for case in cases:
        verdicts = {"aibrix-diag": diag_verdict(run_diag(case.faults)), "baseline": run_baseline(case.faults)}
        row: dict[str, Any] = {"fault": case.name, "truth": case.truth}
        for name, verdict in verdicts.items():
            row[name] = (describe(verdict), score(case.truth, verdict, case.faults.gpu_count))
        rows.append(row)
    return rows


def truth_cell(truth: Truth) -> str:
    return {"gpu": f"gpu{truth.gpu}:{truth.severity}", "node": f"node:{truth.severity}"}.get(truth.scope, truth.scope)


def summarize(rows: list[dict[str, Any]], detector: str) -> dict[str, Any]:
    scores: list[Score] = [row[detector][1] for row in rows]
    faults = [s for s in scores if s.detected is not None]
    detected = [s for s in faults if s.detected]
    return {
        "detection_rate": round(len(detected) / len(faults), 4),
        "severity_match_rate": round(sum(bool(s.severity_ok) for s in faults) / len(faults), 4),
        "false_positive_gpus": sum(len(s.false_positive_gpus) for s in scores),
        "fault_classes": len(faults),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    # 0 right (detected at the truth's severity, or nothing flagged on a healthy node),
    # 1 detected at another severity, 2 missed or a healthy GPU flagged
    def shade(s: Score) -> int:
        if s.false_positive_gpus or s.detected is False:
            return 2
        return 1 if s.severity_ok is False else 0

    names = [r["fault"] for r in rows]
    grid = [[shade(r[d][1]) for d in DETECTORS] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
    ax.imshow(grid, cmap="RdYlGn_r", vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(range(len(DETECTORS)), ["aibrix-diag", "4-check baseline"])
    ax.set_yticks(range(len(names)), [f"{r['fault']} ({truth_cell(r['truth'])})" for r in rows], fontsize=7)
    for y, row in enumerate(rows):
        for x, d in enumerate(DETECTORS):
            ax.text(x, y, row[d][0], ha="center", va="center", fontsize=6)
    title = "Fault detection against the ground truth\n(green right, yellow wrong severity, red missed or false positive)"
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path.relative_to(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diag", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing repetitions (about a second)")
    args = parser.parse_args(argv)
    repeats = 100 if args.quick else 1000

    cases = load_cases()
    rows = evaluate(cases)
    healthy = next(c for c in cases if c.truth.scope == "healthy" and c.faults.gpu_count == 8)
    one_shot, steady, calls = time_passes(healthy.faults, repeats)

    def mark(s: Score) -> str:
        if s.detected is None:
            return "ok" if not s.false_positive_gpus else "FALSE POSITIVE"
        verdict = "missed" if not s.detected else "detected" if s.severity_ok else "detected, other severity"
        return verdict + (f"; flags healthy gpu {','.join(map(str, s.false_positive_gpus))}" if s.false_positive_gpus else "")

    print(f"{'fault class':26} {'truth':11} {'aibrix-diag':18} {'':26} {'4-check baseline':18}")
    print("-" * 130)
    for r in rows:
        (d_cell, d_score), (b_cell, b_score) = r["aibrix-diag"], r["baseline"]
        print(f"{r['fault']:26} {truth_cell(r['truth']):11} {d_cell:18} {mark(d_score):26} {b_cell:18} {mark(b_score)}")
    ours, base = summarize(rows, "aibrix-diag"), summarize(rows, "baseline")
    p95 = sorted(one_shot)[int(0.95 * (len(one_shot) - 1))]
    print("-" * 130)
    print(
        f"faulty GPU (or node) flagged: aibrix-diag {ours['detection_rate']:.0%} "
        f"({ours['severity_match_rate']:.0%} at the truth's severity), 4-check baseline {base['detection_rate']:.0%} "
        f"({base['severity_match_rate']:.0%}), over {ours['fault_classes']} fault classes"
    )
    print(
        f"healthy GPUs flagged, over every file: aibrix-diag {ours['false_positive_gpus']}, "
        f"baseline {base['false_positive_gpus']}"
    )
    print(
        f"one full pass over 8 GPUs (mock): median {statistics.median(one_shot):.2f} ms, p95 {p95:.2f} ms; "
        f"daemon steady-state pass {statistics.median(steady):.2f} ms, {calls} NVML calls "
        f"({repeats} repetitions; timings on a shared, loaded machine)"
    )
    png = plot(rows, RESULTS / "diag_detection.png")
    if png:
        print(f"plot: {png}")
    result = {
        "detection_rate": ours["detection_rate"],
        "severity_match_rate": ours["severity_match_rate"],
        "false_positive_gpus": ours["false_positive_gpus"],
        "baseline_detection_rate": base["detection_rate"],
        "baseline_severity_match_rate": base["severity_match_rate"],
        "baseline_false_positive_gpus": base["false_positive_gpus"],
        "fault_classes": ours["fault_classes"],
        "pass_ms_8gpu": round(statistics.median(one_shot), 3),
        "pass_ms_8gpu_p95": round(p95, 3),
        "steady_pass_ms_8gpu": round(statistics.median(steady), 3),
        "nvml_calls_per_pass": calls,
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
