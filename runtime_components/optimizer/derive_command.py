"""``aibrix-optimize derive``: write roofline-derived profiles for one model or for a whole config.

Kept apart from ``derive`` (the derivation) so that ``config`` may use the deriver and this
command may read a config without the two importing each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime_components.optimizer.config import load_config
from runtime_components.optimizer.derive import DEFAULT_INPUT_BUCKETS, DEFAULT_OUTPUT_BUCKETS, derive_profile
from runtime_components.optimizer.errors import OptimizerError
from runtime_components.optimizer.profiler import check_accelerator, slo_from_args
from runtime_components.optimizer.profiles import save_profile

__all__ = ["run_derive_command"]


def run_derive_command(args: argparse.Namespace) -> int:
    if args.config:
        loaded = load_config(args.config)
        # The config's derive grid unless the command line names one.
        inputs = tuple(args.input_buckets or loaded.config.derive_input_buckets)
        outputs = tuple(args.output_buckets or loaded.config.derive_output_buckets)
        folder = Path(args.output)
        folder.mkdir(parents=True, exist_ok=True)
        done = set()
        for model in loaded.config.models:
            for pool_name in model.pools:
                accel = loaded.config.pool(pool_name).accelerator
                if (model.name, accel) in done:
                    continue
                done.add((model.name, accel))
                profile = derive_profile(model.arch_name, accel, slo=model.slo,
                                         gpus_per_replica=model.gpus_per_replica, served_name=model.name,
                                         input_buckets=inputs, output_buckets=outputs,
                                         request_tokens=args.request_tokens or loaded.config.derive_request_tokens)
                safe_name = model.name.replace("/", "_")  # served names may look like org/model
                path = folder / f"{safe_name}-{accel}-x{model.gpus_per_replica}.json"
                save_profile(profile, path)
                print(f"wrote {path}")
        return 0
    if not args.model or not args.accelerator:
        raise OptimizerError("derive needs --model and --accelerator (or --config)")
    inputs = tuple(args.input_buckets or DEFAULT_INPUT_BUCKETS)
    outputs = tuple(args.output_buckets or DEFAULT_OUTPUT_BUCKETS)
    check_accelerator(args.accelerator)
    profile = derive_profile(args.model, args.accelerator, slo=slo_from_args(args),
                             gpus_per_replica=args.gpus_per_replica, served_name=args.served_name,
                             input_buckets=inputs, output_buckets=outputs,
                             request_tokens=args.request_tokens or "geometric")
    save_profile(profile, args.output)
    print(f"wrote {args.output}: {len(inputs)} x {len(outputs)} cells")
    return 0
