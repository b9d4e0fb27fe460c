"""``python -m benchmarks.workloads KIND --n N --rate R --seed S --out trace.jsonl``."""

from __future__ import annotations

import argparse
import sys

from . import ARRIVALS, KINDS, make_trace, write_jsonl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workloads", description="write a seeded JSONL trace")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--n", type=int, default=200, help="number of requests (default 200)")
    parser.add_argument("--rate", type=float, default=5.0, help="mean (peak for diurnal) requests/s")
    parser.add_argument("--arrival", choices=ARRIVALS, default="poisson")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="llama-3-8b")
    parser.add_argument("--adapters", default="", help="comma-separated LoRA names, Zipf popularity")
    parser.add_argument("--out", required=True, help="output JSONL path")
    args = parser.parse_args(argv)
    adapters = [a for a in args.adapters.split(",") if a]
    try:
        trace = make_trace(
            kind=args.kind, n=args.n, rate=args.rate, seed=args.seed, model=args.model,
            arrival=args.arrival, adapters=adapters,
        )  # fmt: skip
        write_jsonl(trace, args.out)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(trace)} requests over {trace[-1].arrival_s:.1f} s to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
