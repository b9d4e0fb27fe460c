"""The scaler's own HTTP endpoint: `/metrics` (its Prometheus registry) and `/healthz`."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime_components.scaler.controller import Controller

__all__ = ["metrics_app"]


def metrics_app(controller: Controller) -> web.Application:
    """aiohttp app serving the controller's metrics and a liveness answer."""

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(controller.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "leader": controller.elector.is_leader,
                                  "targets": sorted(controller.targets)})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
