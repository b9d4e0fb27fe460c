"""`aibrix-local smoke` on every example stack: does each pass, how fast is it ready, does
anything outlive it.

    python -m benchmarks.local_stack --quick

Each example runs as a real `aibrix-local smoke` process (simulated engines, the gateway, real
Envoy, and the stack's KV pool, optimizer and Redis where it has them); `--quick` runs every
example once, the full run three times. `ready_s` is what the command prints on its ready
line: from the first component started to every engine seen by the gateway through its
discovery, Envoy ready (compilation not included; it is `benchmarks.compile`'s). Orphans are
processes still alive after the command exited whose command line names the run's folder
(every component's config or endpoints file lives there). There is no baseline: the targets
are absolute (every example passes, ready within 30 s, no orphan). Wall-clock times are from
this shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]



EXAMPLES = sorted((REPO / "examples" / "stacks").glob("*.yaml"))
_READY = re.compile(r"^ready in (?P<s>[0-9.]+) s:", re.M)
_SUMMARY = re.compile(r"^smoke \S+: (?P<ok>\d+)/(?P<total>\d+) checks ok$", re.M)


def _orphans(folder: Path) -> int:
    needle = str(folder).encode()
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(os.getpid()):
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                count += 1
        except OSError:
            continue
    return count


def run_one(stack: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="aibrix-local-bench-") as tmp:
        logs = Path(tmp) / "logs"
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "local_stack.cli", "smoke", str(stack), "--log-dir", str(logs)],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
        wall = time.monotonic() - started
        time.sleep(0.2)  # reaping is asynchronous: give a killed process's exit a moment to land
        orphans = _orphans(logs)
    ready = _READY.search(result.stdout)
    summary = _SUMMARY.search(result.stdout)
    return {
        "stack": stack.stem,
        "ok": result.returncode == 0,
        "checks": f"{summary['ok']}/{summary['total']}" if summary else "-",
        "ready_s": float(ready["s"]) if ready else None,
        "wall_s": wall,
        "orphans": orphans,
        "error": "" if result.returncode == 0 else (result.stderr.strip().splitlines() or ["?"])[-1][:100],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every example once (about a minute)")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else 3
    rows = [run_one(stack) for _ in range(rounds) for stack in EXAMPLES]
    print(f"{'stack':<20} {'result':<6} {'checks':>7} {'ready_s':>8} {'wall_s':>7} {'orphans':>7}  error")
    for r in rows:
        ready = f"{r['ready_s']:.1f}" if r["ready_s"] is not None else "-"
        print(f"{r['stack']:<20} {'ok' if r['ok'] else 'FAIL':<6} {r['checks']:>7} {ready:>8} {r['wall_s']:>7.1f} "
              f"{r['orphans']:>7}  {r['error']}")
    readies = [float(r["ready_s"]) for r in rows if r["ready_s"] is not None]  # type: ignore[arg-type]
    result = {
        "stacks_ok_fraction": round(sum(bool(r["ok"]) for r in rows) / len(rows), 3),
        "max_ready_s": round(max(readies), 2) if len(readies) == len(rows) else None,
        "orphans": sum(int(r["orphans"]) for r in rows),  # type: ignore[call-overload]
        "stacks": len(EXAMPLES),
        "rounds": rounds,
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
