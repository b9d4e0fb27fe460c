"""GPU diagnostics benchmark: detection matrix over the fault classes, false positives, pass time.

    python -m benchmarks.diag --quick

Every file in examples/faults/ is one fault class; its `# expect:` lines name the check, GPU
and severity that should report it. Each class runs through aibrix-diag's checks and, in the
same run, through a baseline: a typical four-check nvidia-smi health script (NVML answers,
GPU count, uncorrected volatile ECC, temperature above a fixed 85 C) re-implemented on the same
fake NVML. A class counts as detected when every expected (check, GPU) reports at least warn;
severity matches when the status is the expected one. False positives: non-ok results on the
healthy 8-GPU node. Pass time: a full one-shot pass (nvmlInit, event-set registration, every
check on 8 GPUs, shutdown) against the mock, median and p95; and the daemon's steady-state pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from aibrix_spec.components.diag import DiagConfig, FaultFile
from runtime_components.diag.fake_nvml import FakeNvml
from runtime_components.diag.loading import load_model_file
from runtime_components.diag.report import Report, Status
from runtime_components.diag.session import DiagSession

REPO = Path(__file__).resolve().parents[1]
FAULTS = REPO / "examples" / "faults"
RESULTS = REPO / "benchmarks" / "results"
HEALTHY = "healthy-8gpu"
BASELINE_TEMPERATURE_C = 85


def expectations(path: Path) -> list[tuple[str, int | None, str]]:
    expected: list[tuple[str, int | None, str]] = []
    for line in path.read_text().splitlines():
        words = line.removeprefix("# expect:").split() if line.startswith("# expect:") else []
        if words in ([], ["none"]):
            continue
        if words == ["no-nvml"]:
            expected.append(("no-nvml", None, "no-nvml"))
            continue
        check, status, *rest = words
        expected.append((check, int(rest[1]) if rest[:1] == ["gpu"] else None, status))
    return expected


def run_diag(faults: FaultFile) -> Report:
    config = DiagConfig(expected_gpu_count=faults.gpu_count)
    with DiagSession(FakeNvml(faults), config, node=faults.node) as session:
        return session.run_pass(xid_wait_ms=0)


def run_baseline(faults: FaultFile) -> dict[tuple[str, int | None], str]:
    """The four-check script: {(check, gpu): status} of what it flags, on the same fake NVML."""
    nv = FakeNvml(faults)
    flagged: dict[tuple[str, int | None], str] = {}
    try:
        nv.nvmlInit()
    except nv.NVMLError_LibraryNotFound:
        return {("no-nvml", None): "no-nvml"}
    except nv.NVMLError:
        return {("driver", None): "fail"}
    count = nv.nvmlDeviceGetCount()
    if count < faults.gpu_count:
        flagged[("device-count", None)] = "fail"
    for index in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            if nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU) > BASELINE_TEMPERATURE_C:
                flagged[("temperature", index)] = "fail"
            errors = nv.nvmlDeviceGetTotalEccErrors(handle, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
            if errors:
                flagged[("ecc", index)] = "fail"
        except nv.NVMLError_NotSupported:
            continue
        except nv.NVMLError:
            flagged[("device-access", index)] = "fail"
    nv.nvmlShutdown()
    return flagged


def diag_statuses(report: Report) -> dict[tuple[str, int | None], str]:
    if not report.nvml_available:
        return {("no-nvml", None): "no-nvml"}
    return {(r.check, r.gpu): r.status.label for r in report.results if r.status is not Status.OK}


def judge(
    expected: list[tuple[str, int | None, str]], found: dict[tuple[str, int | None], str]
) -> tuple[bool, bool, str]:
    """(detected, severity matches, what was reported for the expected checks)."""
    got = [found.get((check, gpu), "ok") for check, gpu, _ in expected]
    detected = all(status != "ok" for status in got)
    severity = all(g == want for g, (_, _, want) in zip(got, expected, strict=True))
    return detected, severity, ",".join(got)


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


def plot(rows: list[dict[str, Any]], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shade = {"ok": 0, "warn": 1, "fail": 2, "no-nvml": 1.5}
    names = [r["fault"] for r in rows]
    grid = [
        [max(shade.get(s, 0) for s in r[col].split(",")) for col in ("expected", "aibrix", "baseline")] for r in rows
    ]
    fig, ax = plt.subplots(figsize=(6, 0.32 * len(rows) + 1.2))
    ax.imshow(grid, cmap="RdYlGn_r", vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(range(3), ["expected", "aibrix-diag", "4-check baseline"])
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for y, row in enumerate(rows):
        for x, col in enumerate(("expected", "aibrix", "baseline")):
            ax.text(x, y, row[col], ha="center", va="center", fontsize=6)
    ax.set_title("Fault detection (green ok, yellow warn, red fail)", fontsize=9)
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

    rows: list[dict[str, Any]] = []
    for path in sorted(FAULTS.glob("*.yaml")):
        if path.stem == HEALTHY:
            continue
        faults = load_model_file(path, FaultFile)
        expected = expectations(path)
        ok_diag, sev_diag, got_diag = judge(expected, diag_statuses(run_diag(faults)))
        ok_base, _, got_base = judge(expected, run_baseline(faults))
        rows.append(
            {
                "fault": path.stem,
                "expected": ",".join(s for _, _, s in expected),
                "where": ",".join(f"{c}@{'node' if g is None else g}" for c, g, _ in expected),
                "aibrix": got_diag,
                "detected": ok_diag,
                "severity_ok": sev_diag,
                "baseline": got_base,
                "baseline_detected": ok_base,
            }
        )

    healthy = load_model_file(FAULTS / f"{HEALTHY}.yaml", FaultFile)
    false_positives = sum(1 for r in run_diag(healthy).results if r.status is not Status.OK)
    baseline_false_positives = len(run_baseline(healthy))
    one_shot, steady, calls = time_passes(healthy, repeats)

    print(f"{'fault class':28} {'check@gpu':32} {'expected':9} {'aibrix-diag':12} {'baseline':9}")
    print("-" * 94)
    for r in rows:
        mark = "" if r["severity_ok"] else "  (severity differs)"
        print(f"{r['fault']:28} {r['where']:32} {r['expected']:9} {r['aibrix']:12} {r['baseline']:9}{mark}")
    n = len(rows)
    detection = sum(r["detected"] for r in rows) / n
    baseline_detection = sum(r["baseline_detected"] for r in rows) / n
    severity = sum(r["severity_ok"] for r in rows) / n
    p95 = sorted(one_shot)[int(0.95 * (len(one_shot) - 1))]
    print("-" * 94)
    print(
        f"detected: aibrix-diag {detection:.0%} ({severity:.0%} at the expected severity), "
        f"4-check baseline {baseline_detection:.0%}, over {n} fault classes"
    )
    print(
        f"false positives on the healthy 8-GPU node: aibrix-diag {false_positives}, baseline {baseline_false_positives}"
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
        "detection_rate": round(detection, 4),
        "severity_match_rate": round(severity, 4),
        "baseline_detection_rate": round(baseline_detection, 4),
        "false_positives": false_positives,
        "baseline_false_positives": baseline_false_positives,
        "fault_classes": n,
        "pass_ms_8gpu": round(statistics.median(one_shot), 3),
        "pass_ms_8gpu_p95": round(p95, 3),
        "steady_pass_ms_8gpu": round(statistics.median(steady), 3),
        "nvml_calls_per_pass": calls,
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
