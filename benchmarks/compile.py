"""Benchmark of aibrix-compile: process start, a 100-model stack, and the YAML floor.

    python -m benchmarks.compile --quick

Measures, in one run:

1. ``quickstart_process_s``: median wall time of ``aibrix-compile examples/stacks/quickstart.yaml``
   as a fresh process (what ArgoCD pays per app), against the baseline of a bare
   ``python -c pass`` process measured the same way;
2. ``stack100_s``: median in-process time to compile a generated stack of 100 models and
   500 LoRA adapters (seeded) through the whole pipeline, gate included (every feature it
   uses has a renderer, the adapters' sidecar too), with the time per pass;
3. ``floor_s``: the serialization floor: only dumping the same objects with PyYAML's C
   dumper; ``floor_ratio = stack100_s / floor_s`` (target <= 3);
4. ``hostile_max_s``: the slowest of three hostile inputs, each the median wall time of a
   fresh ``aibrix-compile`` process that must exit 1: a 10-level YAML alias bomb (nine
   aliases per level, 9^10 values if expanded), a 10 MB stack and a 100,000-deep flow
   nesting (target <= 1.0; the process baseline above is part of it).

Prints a table, saves benchmarks/results/compile.png (per-pass time), and ends with one
``RESULT {json}`` line. Timings on a shared machine are inflated by its other load.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "stacks" / "quickstart.yaml"
RESULTS = REPO / "benchmarks" / "results"

POOLS = [("l20", "nvidia-l20", 8), ("a10", "nvidia-a10", 4), ("h100", "nvidia-h100", 8), ("l4", "nvidia-l4", 4)]


def generate_stack(models: int, adapters: int, rng: random.Random) -> str:
    """A valid stack of ``models`` models sharing ``adapters`` adapters round-robin."""
    spec_models: list[dict[str, Any]] = []
    for i in range(models):
        pools = rng.sample([p[0] for p in POOLS], k=rng.choice([1, 1, 2]))
        tensor = rng.choice([1, 1, 2, 4])
        spec_models.append(
            {
                "name": f"model-{i:03d}",
                "source": {"uri": f"hf://org/model-{i:03d}", "secretRef": "hf-token"},
                "engine": {"maxModelLen": rng.choice([4096, 8192, 32768]), "args": {"maxNumSeqs": rng.choice([64, 128, 256])}},
                "placement": {"pools": pools},
                "parallelism": {"tensor": tensor},
                "replicas": {"min": rng.randint(1, 4)},
                "adapters": [],
            }
        )
    for j in range(adapters):
        spec_models[j % models]["adapters"].append({"name": f"adapter-{j:04d}", "source": {"uri": f"hf://org/lora-{j:04d}"}})
    stack = {
        "apiVersion": "aibrix.ai/v1alpha1",
        "kind": "InferenceStack",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "gpuPools": [{"name": n, "accelerator": a, "gpusPerNode": g} for n, a, g in POOLS],
            "models": spec_models,
        },
    }
    return yaml.safe_dump(stack, sort_keys=False)


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def run_process(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=60, cwd=REPO)


def hostile_inputs(folder: Path) -> dict[str, Path]:
    """The hostile stack files of issue 13, written into ``folder``."""
    bomb = ["apiVersion: aibrix.ai/v1alpha1", "kind: InferenceStack", 'l0: &l0 "lol"']
    bomb += [f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]" for k in range(1, 10)]
    files = {
        "alias-bomb-10x9": "\n".join(bomb) + "\n",
        "ten-megabytes": QUICKSTART.read_text() + ("# " + "x" * 97 + "\n") * 104_858,  # 10 MiB of comments
        "nested-100000-deep": "spec: " + "[" * 100_000 + "]" * 100_000 + "\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def run_refused(argv: list[str]) -> None:
    """Run a compile that must be refused: exit 1 and an error with a file:line position."""
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, cwd=REPO)
    if result.returncode != 1 or not result.stderr.startswith(f"error: {argv[-1]}:"):
        raise SystemExit(f"hostile input was not refused cleanly: {argv[-1]} -> {result.returncode}\n{result.stderr[:500]}")


def passes_breakdown(text: str) -> dict[str, float]:
    """Seconds per pass for one compile (the order of compiler.pipeline)."""
    from compiler.defaults import apply_defaults
    from compiler.parse import parse
    from compiler.plan import plan
    from compiler.render import check_compilable, render
    from compiler.serialize import serialize
    from compiler.transforms import transform
    from compiler.validate import validate

    out: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = fn()
        out[name] = time.perf_counter() - start
        return value

    doc = timed("parse", lambda: parse(text, source_name="bench.yaml"))
    stack = timed("validate", lambda: validate(doc))
    resolved = timed("defaults", lambda: apply_defaults(stack))
    timed("gate", lambda: check_compilable(resolved))
    the_plan = timed("plan", lambda: plan(resolved, kube_version=(1, 37)))
    rendered = timed("render", lambda: render(the_plan))
    manifests = timed("transform", lambda: transform(the_plan, rendered))
    timed("serialize", lambda: serialize(manifests))
    return out


def save_plot(breakdown: dict[str, float], floor: float) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = [*breakdown, "YAML floor"]
    values = [v * 1000 for v in breakdown.values()] + [floor * 1000]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(names[::-1], values[::-1], color=["tab:gray"] + ["tab:blue"] * len(breakdown))
    ax.set_xlabel("milliseconds (100 models, 500 adapters)")
    ax.set_title("aibrix-compile: time per pass vs. the PyYAML C-dumper floor")
    fig.tight_layout()
    path = RESULTS / "compile.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute or less)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated stack")
    args = parser.parse_args(argv)
    process_runs, inproc_runs = (7, 5) if args.quick else (21, 15)

    from compiler.pipeline import compile_manifests
    from compiler.serialize import serialize

    script = [sys.executable, "-m", "compiler.cli", str(QUICKSTART)]
    python_floor = median_time(lambda: run_process([sys.executable, "-c", "pass"]), process_runs)
    quickstart = median_time(lambda: run_process(script), process_runs)

    with tempfile.TemporaryDirectory() as tmp:
        hostile = {
            name: median_time(lambda p=path: run_refused([sys.executable, "-m", "compiler.cli", str(p)]), process_runs)
            for name, path in hostile_inputs(Path(tmp)).items()
        }
    hostile_max = max(med for med, _lo, _hi in hostile.values())

    text = generate_stack(100, 500, random.Random(args.seed))
    compile_manifests(text, source_name="bench.yaml")  # warm imports and caches

    def full() -> dict[str, str]:
        _plan, manifests = compile_manifests(text, source_name="bench.yaml")
        return serialize(manifests)

    stack100 = median_time(full, inproc_runs)
    _plan, manifests = compile_manifests(text, source_name="bench.yaml")
    bodies = [m.body for m in manifests]
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    floor = median_time(lambda: yaml.dump_all(bodies, Dumper=dumper, sort_keys=False), inproc_runs)
    breakdown = passes_breakdown(text)
    plot = save_plot(breakdown, floor[0])

    ratio = stack100[0] / floor[0]
    rows = [
        ("python -c pass (process baseline)", python_floor),
        ("aibrix-compile quickstart (process)", quickstart),
        *((f"hostile: {name} (process, exit 1)", timing) for name, timing in hostile.items()),
        (f"compile 100 models / 500 adapters ({len(bodies)} objects)", stack100),
        ("YAML floor: C dumper, same objects", floor),
    ]
    print(f"{'measurement':<52} {'median s':>9} {'min s':>8} {'max s':>8}")
    for name, (med, lo, hi) in rows:
        print(f"{name:<52} {med:>9.4f} {lo:>8.4f} {hi:>8.4f}")
    print()
    print("per pass, one compile of the 100-model stack:")
    for name, seconds in breakdown.items():
        print(f"  {name:<10} {seconds * 1000:8.1f} ms")
    print()
    print(f"compile / floor ratio: {ratio:.2f} (target <= 3); quickstart process target <= 0.5 s; 100-model target <= 1.5 s")
    print(f"slowest hostile input: {hostile_max:.3f} s (target <= 1.0 s, process start included)")
    if plot is not None:
        print(f"plot: {plot.relative_to(REPO)}")
    print("note: timings on a shared 2-core machine are inflated by the other load")
    result = {
        "quickstart_process_s": round(quickstart[0], 4),
        "python_process_floor_s": round(python_floor[0], 4),
        "stack100_s": round(stack100[0], 4),
        "floor_s": round(floor[0], 4),
        "floor_ratio": round(ratio, 3),
        "hostile_max_s": round(hostile_max, 4),
        "objects": len(bodies),
        "models": 100,
        "adapters": 500,
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
