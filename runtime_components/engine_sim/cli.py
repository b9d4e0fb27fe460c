"""``aibrix-engine-sim``: start N simulated vLLM engines in one process.

Prints one JSON object per engine on stdout (``{"index", "url", "host", "port", "model",
"accelerator", "engine"}``, plus ``kv_events_port`` with ``--kv-events-config``), then a line
``READY``; with ``--endpoints-file PATH`` it also writes the
list there as JSON. Runs until SIGINT/SIGTERM or ``--duration`` seconds.

Example::

    aibrix-engine-sim --engines 8 --base-port 0 --accelerator nvidia-l20 --speedup 1 \\
        --fault 3:slowdown=4 --endpoints-file endpoints.json

``--metrics-dialect sglang`` shows the same engines as SGLang pods (``/metrics`` under SGLang's
names, SGLang's ``/v1/models`` and ``/get_model_info``), so one seeded trace can be run
against both dialects.

``--pd-role prefill|decode`` makes every engine of the process one side of a
prefill/decode pair (``pd.py``; ``both``, the default, serves whole requests), and
``--pd-link-gbs`` is the bandwidth a decode engine receives KV over. Run one process per role::

    aibrix-engine-sim --engines 2 --pd-role prefill --endpoints-file prefill.json
    aibrix-engine-sim --engines 2 --pd-role decode --pd-link-gbs 25 --endpoints-file decode.json

``--gpu-faults FILE`` (or ``AIBRIX_DIAG_MOCK=FILE``, the diag fault file) places engine ``i``
on GPU ``--gpu-index + i * --tensor-parallel`` and applies what that GPU's state does to an
engine (``gpu_faults.py``); ``--fault`` settings then apply on top. One line per affected
engine goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from aibrix_spec.catalog import ACCELERATORS, MODEL_ARCHS
from runtime_components.common.config_file import ConfigFileError
from runtime_components.common.shutdown import stop_event

from .cluster import EngineCluster
from .config import EngineConfig
from .faults import Faults, parse_fault_spec
from .gpu_faults import MOCK_ENV, engine_faults, load_fault_file, place_engines
from .kv_publisher import parse_kv_events_config
from .metrics import METRIC_DIALECTS
from .pd import DEFAULT_LINK_GBS, PD_ROLES

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aibrix-engine-sim", description="simulated vLLM (or SGLang-dialect) engines (OpenAI API + /metrics)"
    )
    p.add_argument("--engines", type=int, default=1, help="how many engines (one port each)")
    p.add_argument("--base-port", type=int, default=0, help="first port; 0 binds ephemeral ports (default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model", default="llama-3-8b", help=f"model architecture: {', '.join(sorted(MODEL_ARCHS))}")
    p.add_argument("--served-model-name", default="", help="the OpenAI model name (default: --model)")
    p.add_argument("--accelerator", default="nvidia-a100-80gb", help=f"GPU: {', '.join(sorted(ACCELERATORS))}")
    p.add_argument("--tensor-parallel", type=int, default=1)
    p.add_argument("--max-num-batched-tokens", type=int, default=2048)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--num-gpu-blocks", type=int, default=None, help="override the KV capacity (blocks of 16)")
    p.add_argument("--no-prefix-caching", action="store_true")
    p.add_argument("--scheduling-policy", choices=["fcfs", "priority"], default="fcfs",
                   help="vLLM's: priority orders waiting requests by their priority field (lower first)")
    p.add_argument("--max-loras", type=int, default=4)
    p.add_argument("--lora-load-s", type=float, default=0.5, help="simulated seconds an adapter load takes")
    p.add_argument("--adapters", default="", help="comma-separated adapters loaded at start on every engine")
    p.add_argument("--speedup", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument("--fault", action="append", default=[], metavar="INDEX:KEY=VALUE[,...]",
                   help="fault at start, e.g. 2:slowdown=3 or 0:error_rate=0.5,metrics=stale (repeatable)")
    p.add_argument("--gpu-faults", default=None, metavar="FILE",
                   help=f"a diag GPU fault file (examples/faults/*.yaml): each engine suffers its GPUs' faults "
                        f"(default: ${MOCK_ENV} when set)")
    p.add_argument("--gpu-index", type=int, default=0, metavar="N",
                   help="the GPU of engine 0 in --gpu-faults; engine i uses GPU N + i * --tensor-parallel")
    p.add_argument("--metrics-dialect", choices=METRIC_DIALECTS, default="vllm",
                   help="whose /metrics names the engines expose: vllm (default) or sglang")
    p.add_argument("--kv-events-config", default=None, metavar="JSON",
                   help='publish KV-cache events as vLLM does, e.g. \'{"enable_kv_cache_events": true, '
                        '"publisher": "zmq", "endpoint": "tcp://*:5557"}\' (engine i binds port + i; 0: free ports)')
    p.add_argument("--pd-role", choices=PD_ROLES, default="both",
                   help="prefill/decode role: both (whole requests, default), prefill (answers a "
                        "do_remote_decode request after one token with kv_transfer_params) or decode "
                        "(receives the prompt's KV a prefill engine computed)")
    p.add_argument("--pd-link-gbs", type=float, default=DEFAULT_LINK_GBS, metavar="GBS",
                   help=f"GB/s of the link a decode engine receives KV over (default {DEFAULT_LINK_GBS})")
    p.add_argument("--seed", type=int, default=0, help="seeds the error-rate fault")
    p.add_argument("--endpoints-file", default=None, help="also write the endpoints as a JSON list here")
    p.add_argument("--duration", type=float, default=None, help="exit after this many seconds")
    return p


def _configs(args: argparse.Namespace) -> list[EngineConfig]:
    if args.engines < 1:
        raise ValueError(f"--engines must be >= 1, got {args.engines}")
    if not 0 <= args.base_port <= 65535 - args.engines:
        raise ValueError(f"--base-port {args.base_port} leaves no room for {args.engines} ports below 65536")
    config = EngineConfig(
        accelerator=args.accelerator,
        model_arch=args.model,
        served_model_name=args.served_model_name,
        tensor_parallel=args.tensor_parallel,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_num_seqs=args.max_num_seqs,
        max_model_len=args.max_model_len,
        num_gpu_blocks=args.num_gpu_blocks,
        enable_prefix_caching=not args.no_prefix_caching,
        max_loras=args.max_loras,
        lora_load_s=args.lora_load_s,
        scheduling_policy=args.scheduling_policy,
    )
    from .core import EngineCore

    EngineCore(config)  # fail now (model does not fit, ...) rather than after binding ports
    return [config] * args.engines


async def _serve(args: argparse.Namespace, configs: list[EngineConfig], faults: dict[int, Faults]) -> None:
    kv_events = parse_kv_events_config(args.kv_events_config) if args.kv_events_config else None
    cluster = EngineCluster(configs, speedup=args.speedup, faults=faults, seed=args.seed, host=args.host,
                            metrics_dialect=args.metrics_dialect, kv_events=kv_events, pd_role=args.pd_role,
                            pd_link_gbs=args.pd_link_gbs)
    stop = stop_event(args.duration)
    try:
        endpoints = await cluster.start(args.base_port)
        for server in cluster.servers:
            for name in [a for a in args.adapters.split(",") if a]:
                server.core.load_adapter(name)
        if args.endpoints_file:
            Path(args.endpoints_file).write_text(json.dumps(endpoints, indent=2) + "\n", encoding="utf-8")
        for endpoint in endpoints:
            print(json.dumps(endpoint, sort_keys=True))
        print("READY", flush=True)
        await stop.wait()
    finally:
        await cluster.stop()


def _gpu_faults(args: argparse.Namespace) -> dict[int, Faults]:
    """The engines' faults from the GPU fault file (none without one); reports them on stderr."""
    path = args.gpu_faults or os.environ.get(MOCK_ENV) or None
    if path is None:
        if args.gpu_index:
            raise ValueError("--gpu-index needs a GPU fault file: pass --gpu-faults FILE or set " + MOCK_ENV)
        return {}
    placements = place_engines(load_fault_file(path), args.engines, first_gpu=args.gpu_index,
                               tensor_parallel=args.tensor_parallel)  # fmt: skip
    for placement in placements:
        if placement.reasons:
            print(f"gpu-faults: {placement.describe()}", file=sys.stderr)
    return engine_faults(placements)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configs = _configs(args)
        faults = _gpu_faults(args)
        for spec in args.fault:
            index, changes = parse_fault_spec(spec)
            if index >= args.engines:
                raise ValueError(f"--fault {spec!r} names engine {index}, but engines are 0..{args.engines - 1}")
            faults[index] = faults.get(index, Faults()).updated(changes)
        if args.kv_events_config:
            parse_kv_events_config(args.kv_events_config)  # fail before binding anything
        if args.speedup <= 0:
            raise ValueError(f"--speedup must be > 0, got {args.speedup}")
        if args.pd_link_gbs <= 0:
            raise ValueError(f"--pd-link-gbs must be > 0 (GB/s of the prefill-to-decode link), got {args.pd_link_gbs}")
        if args.adapters and len([a for a in args.adapters.split(",") if a]) > args.max_loras:
            raise ValueError(f"--adapters lists more adapters than --max-loras {args.max_loras}")
    except ConfigFileError as exc:
        print(exc.render(), end="", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(args, configs, faults))
    except OSError as exc:
        print(f"error: cannot bind {args.host}:{args.base_port}: {exc.strerror}; hint: --base-port 0 picks free ports",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
