"""`aibrix-scaler`: run the controller, check a config, or run everything locally.

    aibrix-scaler check --config scaler.yaml
    aibrix-scaler run   --config scaler.yaml [--api-url URL | --kubeconfig FILE] [--identity NAME]
    aibrix-scaler local --config scaler.yaml [--startup-delay 2] [--ramp 0:4,60:16,150:4] [--duration 240]
                        [--initial-replicas 0] [--kubeconfig-out FILE]

`run` talks to a Kubernetes API (in-cluster service account by default). `local` starts the
in-memory API server of `runtime_components.common.fake_kube` whose Deployments start real `aibrix-engine-sim`
processes, and runs the controller against it. Bad input prints one `error:` message and
exits 2 (arguments) or 1 (config); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from aiohttp import web

from runtime_components.common.shutdown import stop_event
from runtime_components.scaler.config import ConfigError, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aibrix-scaler", description="LLM-aware autoscaler (HPA, KPA, APA).")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a config file and print its targets")
    check.add_argument("--config", type=Path, required=True, help="scaler.yaml (the ConfigMap's file)")
    run = sub.add_parser("run", help="run the controller against a Kubernetes API")
    run.add_argument("--config", type=Path, required=True, help="scaler.yaml (the ConfigMap's file)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--api-url", help="plain-HTTP API server URL (local targets and tests)")
    where.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster service account)")
    run.add_argument("--identity", default=None, help="Lease holder identity (default: pod name or host name)")
    run.add_argument("--metrics-port", type=int, default=None, help="override the config's metricsPort")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    local = sub.add_parser("local", help="run a local API server with simulated engines and the scaler")
    local.add_argument("--config", type=Path, required=True, help="scaler.yaml with engine-source targets")
    local.add_argument("--startup-delay", type=float, default=2.0, help="seconds before a new engine is Ready")
    local.add_argument("--initial-replicas", type=int, default=1, help="replicas of each workload at start")
    local.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    local.add_argument("--ramp", default="", help="closed-loop load: SECONDS:CLIENTS,... e.g. 0:4,60:16,150:4")
    local.add_argument("--model", default="llama-3-8b", help="engine_sim model architecture")
    local.add_argument("--accelerator", default="nvidia-a100-80gb", help="engine_sim accelerator")
    local.add_argument("--kubeconfig-out", type=Path, default=None,
                       help="write a kubeconfig for the local API server here (a gateway in kubernetes mode "
                            "can then discover the engine pods, e.g. to scale from zero behind flow control)")
    for p in (run, local):
        p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    if args.command == "check":
        for t in config.targets:
            ref = t.scale_target_ref
            print(f"{t.name}: {t.policy} on {ref.kind} {ref.namespace}/{ref.name}: {t.metric.display} "
                  f"({t.metric.source}, {t.metric.aggregation}) target {t.target:g} per replica, "
                  f"replicas [{t.min_replicas}, {t.max_replicas}], every {t.sync_period_seconds:g} s")
        return 0
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "run":
        if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
            print(f"error: --metrics-port {args.metrics_port} is not a port (expected 0-65535)", file=sys.stderr)
            return 2
        if args.api_url is None and args.kubeconfig is None and "KUBERNETES_SERVICE_HOST" not in os.environ:
            print("error: no Kubernetes API to talk to: not in a cluster and neither --api-url nor "
                  "--kubeconfig was given\n  hint: for a local run without a cluster use "
                  "`aibrix-scaler local --config ...`", file=sys.stderr)
            return 2
        identity = args.identity or os.environ.get("POD_NAME") or socket.gethostname()
        port = args.metrics_port if args.metrics_port is not None else config.metrics_port
        return asyncio.run(_run(config, args.api_url, args.kubeconfig, identity, port, args.duration))
    from runtime_components.scaler.local.runner import parse_ramp, run_local

    if args.startup_delay < 0 or args.initial_replicas < 0:
        print("error: --startup-delay and --initial-replicas must not be negative", file=sys.stderr)
        return 2
    try:
        ramp = parse_ramp(args.ramp)
        return asyncio.run(run_local(config, startup_delay=args.startup_delay,
                                     initial_replicas=args.initial_replicas, duration=args.duration,
                                     ramp=ramp, model=args.model, accelerator=args.accelerator,
                                     kubeconfig_out=args.kubeconfig_out))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1


async def _run(config, api_url, kubeconfig, identity, port, duration) -> int:  # type: ignore[no-untyped-def]
    from kubernetes.config.config_exception import ConfigException

    from runtime_components.scaler.controller import Controller
    from runtime_components.scaler.kube import KubeApi, connect
    from runtime_components.scaler.server import metrics_app

    try:
        api_client = connect(api_url=api_url, kubeconfig=kubeconfig)
    except (ConfigException, OSError) as error:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster service account"
        print(f"error: cannot load Kubernetes credentials from {where}: {error}\n"
              "  hint: check the file, or pass --api-url for a plain-HTTP API server", file=sys.stderr)
        return 1
    controller = Controller(config, KubeApi(api_client), identity=identity)
    runner = web.AppRunner(metrics_app(controller), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", port)
    try:
        await site.start()
    except OSError as error:
        print(f"error: cannot serve /metrics on port {port}: {error.strerror or error}\n"
              "  hint: pick another with --metrics-port", file=sys.stderr)
        await runner.cleanup()
        return 1
    stop = stop_event(duration)
    try:
        await controller.run(stop)
    finally:
        await runner.cleanup()
        api_client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
