"""``aibrix-sidecar``: run the adapter reconciler next to one engine.

    aibrix-sidecar --config /etc/aibrix/sidecar.yaml --engine http://127.0.0.1:8000 \
        --pod-name "$POD_NAME" [--namespace "$POD_NAMESPACE"] [--port 9090] [--once]

``--once`` runs one pass and exits 0 when converged, 1 otherwise (useful in scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aibrix_spec.components.sidecar import SidecarConfig
from runtime_components.common.config_file import ConfigFileError, load_model_file
from runtime_components.common.shutdown import stop_event

from .daemon import Sidecar
from .engine_client import EngineClient
from .pods import KubernetesPods, PodLister, StaticPods

__all__ = ["main", "load_config"]


class ConfigError(Exception):
    """A config the sidecar cannot use; ``str()`` is the user-facing message."""


def load_config(path: str) -> SidecarConfig:
    """Read and validate the sidecar config (YAML, or JSON, which is YAML too) with line-numbered errors."""
    try:
        return load_model_file(
            path,
            SidecarConfig,
            read_hint="pass the mounted sidecar config, e.g. --config /etc/aibrix/sidecar.yaml",
            top_hint="see docs/sidecar.md for the file format",
        )
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None


def _pod_lister(config: SidecarConfig, namespace: str | None) -> PodLister:
    if config.pods.kind == "static":
        if not config.pods.static_file:
            raise ConfigError("pods.staticFile is required when pods.kind is static")
        return StaticPods(config.pods.static_file)
    ns = config.pods.namespace or namespace
    if not ns:
        raise ConfigError("the pods' namespace is unknown: set pods.namespace or pass --namespace")
    return KubernetesPods(ns, config.pods.label_selector)


async def _serve(sidecar: Sidecar, port: int, once: bool) -> int:
    from aiohttp import web

    if once:
        report = await sidecar.run_once()
        return 0 if report.converged else 1
    app = web.Application()
    app.router.add_get("/status", lambda _r: web.json_response(sidecar.status()))
    app.router.add_get("/healthz", lambda _r: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", port)
    await site.start()
    stop = stop_event()
    try:
        await sidecar.run_forever(stop)
    finally:
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="aibrix-sidecar", description="Reconcile an engine's LoRA adapters with the stack.")
    ap.add_argument("--config", required=True, help="sidecar config file (YAML or JSON)")
    ap.add_argument("--engine", default="http://127.0.0.1:8000", help="the engine's base URL")
    ap.add_argument("--pod-name", required=True, help="this pod's name (downward API)")
    ap.add_argument("--namespace", help="this pod's namespace (downward API)")
    ap.add_argument("--port", type=int, default=9090, help="port of /status and /healthz")
    ap.add_argument("--once", action="store_true", help="one pass; exit 0 when converged")
    args = ap.parse_args(argv)
    try:
        config = load_config(args.config)
        pods = _pod_lister(config, args.namespace)
    except ConfigError as exc:
        message = str(exc)  # config-file errors come rendered ("error: file:line:col ..."); others are one line
        print(message if message.startswith("error: ") else f"error: {message}", file=sys.stderr)
        return 1

    async def run() -> int:
        async with EngineClient(args.engine) as engine:
            sidecar = Sidecar(config, pod_name=args.pod_name, engine=engine, pods=pods)
            code = await _serve(sidecar, args.port, args.once)
            if args.once:
                print(json.dumps(sidecar.status(), sort_keys=True, default=list))
            return code

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
