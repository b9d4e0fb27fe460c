"""``aibrix-optimize``: plan, derive, profile, serve.

    aibrix-optimize plan    --config CONFIG [--workload FILE] [--profiles PATH ...] [--solver cbc|highs]
    aibrix-optimize derive  --model ARCH --accelerator NAME --ttft-p99-ms MS --tpot-p99-ms MS -o FILE
    aibrix-optimize profile --url URL --model NAME --accelerator NAME ... -o FILE
    aibrix-optimize serve   --config CONFIG [--host H] [--port P]

Every user error (bad file, unknown name, infeasible plan) is one message on stderr and a
non-zero exit: 1 for input errors, 3 for an infeasible plan, 2 for bad arguments (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from runtime_components.common.cli_types import positive_float, positive_int
from runtime_components.optimizer.errors import InfeasibleError, OptimizerError

__all__ = ["main", "build_parser"]

EXIT_INPUT = 1
EXIT_INFEASIBLE = 3


def _bucket_list(text: str) -> list[int]:
    from aibrix_spec.token_buckets import BUCKETS

    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    bad = [v for v in values if v not in BUCKETS]
    if bad or not values:
        raise argparse.ArgumentTypeError(
            f"{bad or text!r}: expected log2 token buckets from {', '.join(map(str, BUCKETS))}"
        )
    return sorted(set(values))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aibrix-optimize", description="SLO-driven GPU-mix optimizer.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="print the cheapest plan meeting the SLO as a table")
    plan.add_argument("--config", required=True, help="optimizer config (YAML/JSON)")
    plan.add_argument("--workload", help="workload file; overrides the config's workload source")
    plan.add_argument("--profiles", action="append", default=[], help="profile file or folder (repeatable)")
    plan.add_argument("--solver", choices=["cbc", "highs"], help="override the config's solver")
    plan.add_argument("--routing", action="store_true", help="also print each cell's split over pools")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")

    derive = sub.add_parser("derive", help="derive roofline profiles from the simulated engine model")
    derive.add_argument("--config", help="derive every profile this config needs (writes into -o FOLDER)")
    derive.add_argument("--model", help="model-architecture catalogue key, e.g. llama-3-8b")
    derive.add_argument("--served-name", help="model name to write in the profile (default: --model)")
    derive.add_argument("--accelerator", help="accelerator catalogue key, e.g. nvidia-a10")
    derive.add_argument("--gpus-per-replica", type=positive_int, default=1)
    derive.add_argument("--ttft-p99-ms", type=positive_float)
    derive.add_argument("--tpot-p99-ms", type=positive_float)
    derive.add_argument("--input-buckets", type=_bucket_list, help="comma-separated (default: 16..8192)")
    derive.add_argument("--output-buckets", type=_bucket_list, help="comma-separated (default: 16..2048)")
    derive.add_argument("--request-tokens", choices=["upper", "geometric"],
                        help="length simulated inside each bucket: the geometric middle of its range (default; "
                             "with --config, the config's deriveRequestTokens) or its upper bound (safe for every "
                             "request, more GPUs)")
    derive.add_argument("-o", "--output", required=True, help="profile file (or folder with --config)")

    profile = sub.add_parser("profile", help="measure an OpenAI-compatible endpoint over the grid")
    profile.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    profile.add_argument("--model", required=True, help="model name sent in requests and written to the profile")
    profile.add_argument("--accelerator", required=True, help="accelerator catalogue key the endpoint runs on")
    profile.add_argument("--gpus-per-replica", type=positive_int, default=1)
    profile.add_argument("--ttft-p99-ms", type=positive_float)
    profile.add_argument("--tpot-p99-ms", type=positive_float)
    profile.add_argument("--input-buckets", type=_bucket_list, default=[128, 512, 2048])
    profile.add_argument("--output-buckets", type=_bucket_list, default=[32, 128, 512])
    profile.add_argument("--requests-per-probe", type=positive_int, default=60,
                         help="fewest requests per rate probe (more when needed to reach steady state)")
    profile.add_argument("--speedup", type=positive_float, default=1.0,
                         help="the endpoint runs this many times faster than real time (aibrix-engine-sim --speedup)")
    profile.add_argument("--seed", type=int, default=0)
    profile.add_argument("--request-tokens", choices=["upper", "geometric"],
                         help="length sent inside each bucket: the geometric middle of its range (default) or its "
                              "upper bound")
    profile.add_argument("-o", "--output", required=True, help="profile file to write")

    serve = sub.add_parser("serve", help="re-solve periodically and serve desired replicas on /metrics")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "plan":
            return _plan(args)
        if args.command == "derive":
            from runtime_components.optimizer.derive_command import run_derive_command

            return run_derive_command(args)
        if args.command == "profile":
            from runtime_components.optimizer.profiler import run_profile_command

            return run_profile_command(args)
        from runtime_components.optimizer.service import run_service

        return run_service(args.config, host=args.host, port=args.port)
    except InfeasibleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INFEASIBLE
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT


def _plan(args: argparse.Namespace) -> int:
    from runtime_components.optimizer.config import load_config, load_profiles_for
    from runtime_components.optimizer.report import format_plan, plan_to_json
    from runtime_components.optimizer.solve import plan_from_config
    from runtime_components.optimizer.workload import load_workload

    loaded = load_config(args.config)
    if args.workload:
        workload = load_workload(args.workload)
    elif loaded.config.workload.file:
        workload = load_workload(loaded.path(loaded.config.workload.file))
    else:
        raise OptimizerError(
            f"{args.config}: the config reads its workload from gateways; `plan` needs a file\n"
            f"  hint: pass --workload FILE (format in docs/optimizer.md), or run `aibrix-optimize serve`"
        )
    profiles = load_profiles_for(loaded, args.profiles, on_derive=lambda line: print(line, file=sys.stderr))
    plan = plan_from_config(loaded.config, profiles, workload, solver=args.solver)
    if args.json:
        print(json.dumps(plan_to_json(plan), indent=1))
    else:
        print(format_plan(plan, routing=args.routing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
