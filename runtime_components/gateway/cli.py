"""``aibrix-gateway``: run the ext_proc gateway from a config file.

    aibrix-gateway --config gateway.yaml [--workers N] [--grpc-port N] [--http-port N] [--kubeconfig FILE]

Prints one JSON line ``{"event": "ready", "grpcPort": ..., "httpPort": ...}`` on stdout once
both servers listen (port 0 picks a free port), then serves until SIGINT/SIGTERM. With
``--workers N`` (or ``workers`` in the config) above 1 the process is a supervisor
(``supervisor.py``) of N worker processes, and the ready line adds ``grpcPorts`` (one per
worker, ``grpcPort + i``) and ``workers``. Bad input
(a missing or invalid config, users or endpoints file, an unreachable Redis) prints one
``error:`` message and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Callable
from typing import Any

from runtime_components.common.shutdown import stop_event

from .config_file import ConfigError, load_config

__all__ = ["main"]

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aibrix-gateway", description="LLM-aware Envoy ext_proc gateway.")
    p.add_argument("--config", required=True, help="gateway config file (YAML); see docs/gateway.md")
    p.add_argument("--grpc-port", type=int, help="override listen.grpcPort (0 = any free port)")
    p.add_argument("--http-port", type=int, help="override listen.httpPort (0 = any free port)")
    p.add_argument("--host", help="override listen.host")
    p.add_argument("--kubeconfig", help="kubeconfig for discovery.mode kubernetes (default: in-cluster config)")
    p.add_argument("--workers", type=int, help="override workers: gateway processes in this pod (1..64)")
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    p.add_argument("--worker-count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _kubernetes_client(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException as exc:
        raise ConfigError(f"cannot configure the Kubernetes client ({exc}); run in a pod or pass --kubeconfig FILE") from None


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``listen.eventLoop`` (None: asyncio's default)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("listen.eventLoop is uvloop but uvloop is not installed; pip install uvloop "
                              "(the gateway extra has it) or set listen.eventLoop: auto") from None
        return None
    return uvloop.new_event_loop


async def _serve(args: argparse.Namespace, config: Any) -> int:
    from .app import GatewayApp, StartupError
    from .discovery.static import EndpointsFileError
    from .exact_tokens import TokenizerFileError
    from .users import UsersFileError

    listen = config.listen.model_copy(update={k: v for k, v in {
        "grpc_port": args.grpc_port, "http_port": args.http_port, "host": args.host}.items() if v is not None})
    config = config.model_copy(update={"listen": listen})
    workers = args.workers if args.workers is not None else config.workers
    if not 1 <= workers <= 64:
        raise ConfigError(f"--workers must be within 1..64, got {workers}")
    if workers > 1 and args.worker_index is None:
        return await _supervise(config, args, workers)
    if args.worker_index is not None:
        # Distinct random tie-breaks per worker: identical seeds would make every worker pick
        # the same endpoint among equals at the same moment.
        config = config.model_copy(update={"seed": config.seed + 1_000_003 * args.worker_index})
    api_client = _kubernetes_client(args.kubeconfig) if config.discovery.mode == "kubernetes" else None
    try:
        app = GatewayApp(config, kubernetes_api_client=api_client,
                         http_host="127.0.0.1" if args.worker_index is not None else None)
        await app.start()
    except (EndpointsFileError, UsersFileError, StartupError, TokenizerFileError) as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"cannot start: {exc}; check listen ports and rateLimits.redisUrl") from None
    except Exception as exc:
        if exc.__class__.__module__.startswith("redis"):
            raise ConfigError(f"cannot reach Redis at rateLimits.redisUrl ({exc})") from None
        raise
    # Everything built so far (modules, protobuf descriptors, config, tables) lives as long as
    # the process: keep it out of the cyclic collector's scans, which the hot path triggers.
    gc.freeze()
    print(app.ready_line(), flush=True)
    await stop_event().wait()
    await app.stop()
    return 0


async def _supervise(config: Any, args: argparse.Namespace, workers: int) -> int:
    from .supervisor import Supervisor, WorkerStartError

    supervisor = Supervisor(config, args.config, workers, log_level=args.log_level, kubeconfig=args.kubeconfig)
    try:
        await supervisor.start()
    except WorkerStartError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        await supervisor.stop()
        raise ConfigError(f"cannot start: {exc}; check listen.httpPort") from None
    print(supervisor.ready_line(), flush=True)
    stop = asyncio.ensure_future(stop_event().wait())
    exited = asyncio.ensure_future(supervisor.wait_for_a_worker_exit())
    await asyncio.wait({stop, exited}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if exited.done():
        log.error("gateway worker %d exited; stopping the pod's other workers", exited.result())
        status = 1
    stop.cancel()
    exited.cancel()
    await supervisor.stop()
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = load_config(args.config)
        with asyncio.Runner(loop_factory=loop_factory(config.listen.event_loop)) as runner:
            return runner.run(_serve(args, config))
    except ConfigError as exc:
        message = str(exc)  # config-file errors come rendered ("error: file:line:col ..."); others are one line
        print(message if message.startswith("error: ") else f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
