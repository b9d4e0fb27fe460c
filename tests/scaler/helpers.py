"""Shared test helpers: serve aiohttp apps on 127.0.0.1:0 and a config builder."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from aibrix_spec.components.scaler import ScalerConfig


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on an ephemeral loopback port; yield its base URL; always clean up."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def metrics_app(values: dict[str, float], model: str = "m") -> web.Application:
    """A Prometheus text endpoint whose gauge values the test changes through `values`."""

    async def handler(_request: web.Request) -> web.Response:
        lines = []
        for name, value in values.items():
            lines.append(f"# TYPE {name} gauge")
            lines.append(f'{name}{{engine="0",model_name="{model}"}} {value}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


def config(**target_overrides: Any) -> ScalerConfig:
    """A one-target engine-source config; keyword arguments replace target fields (camelCase); None removes one."""
    target: dict[str, Any] = {
        "name": "llama",
        "scaleTargetRef": {"name": "llama", "namespace": "llm"},
        "podSelector": {"model.aibrix.ai/name": "llama"},
        "metric": {"name": "vllm:num_requests_running", "source": "engine", "aggregation": "per-pod",
                   "engine": {"labels": {"model_name": "m"}}},
        "target": 10,
        "minReplicas": 1,
        "maxReplicas": 5,
        "policy": "apa",
        "apa": {"windowSeconds": 10, "scaleDownCooldownSeconds": 0},
        "staleAfterSeconds": 30,
    }
    target.update(target_overrides)
    target = {k: v for k, v in target.items() if v is not None}  # None removes a field
    return ScalerConfig.model_validate({"targets": [target]})


def engine_page(running: float, tokens: float, model: str = "m", timestamp_ms: int | None = None) -> str:
    """A vLLM-shaped /metrics page: the running gauge and a token counter (which moves while serving)."""
    stamp = f" {timestamp_ms}" if timestamp_ms is not None else ""
    return (f"# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{engine="0",model_name="{model}"}} {running}{stamp}\n'
            f"# TYPE vllm:generation_tokens_total counter\n"
            f'vllm:generation_tokens_total{{engine="0",model_name="{model}"}} {tokens}{stamp}\n')
