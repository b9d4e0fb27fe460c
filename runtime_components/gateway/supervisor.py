"""Several gateway workers in one pod: ``aibrix-gateway --workers N``.

One Python process routes on one core; a pod with N cores runs N workers. The supervisor
(this module, the pod's main process):

1. starts the pod-local hub (:meth:`Supervisor.start_hub`, ``routing_sync.serve_hub`` on a
   Unix socket), which relays each worker's routing-state batches (prefix index, session
   table, sticky route clients) to its siblings so their decisions stay coherent; skipped
   when the config names a Redis for routing state (every worker then follows the stream);
2. starts N workers, each the ordinary single-process gateway (``cli`` with
   ``--worker-index i --worker-count N``, also in the environment as
   ``AIBRIX_GATEWAY_WORKER_INDEX`` / ``AIBRIX_GATEWAY_WORKER_COUNT``): worker i serves
   ext_proc on ``listen.grpcPort + i`` (each picks a free port when grpcPort is 0) and its
   own HTTP page on a loopback port of its choosing;
3. serves the pod's HTTP port itself: ``/metrics`` is every worker's page merged
   (``metrics_merge``: counters summed), ``/healthz`` is 200 only while every worker
   answers, ``/v1/models`` is worker 0's;
4. exits (status 1) when a worker dies, so Kubernetes restarts the pod, and stops every
   worker on SIGTERM.

Envoy spreads ext_proc streams over the workers' ports (round robin per stream, see
``compiler/render/envoy_bootstrap.py``); a port per worker was chosen over one SO_REUSEPORT
port because the kernel balances *connections* and Envoy opens very few (one HTTP/2
connection per upstream host and Envoy thread): docs/gateway.md ("Several workers").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

import aiohttp
from aiohttp import web

from aibrix_spec.components.gateway import GatewayConfig

from .metrics_merge import merge_pages
from .routing_sync import HUB_SOCKET_ENV, serve_hub

__all__ = ["WORKER_COUNT_ENV", "WORKER_INDEX_ENV", "Supervisor"]

log = logging.getLogger(__name__)

WORKER_INDEX_ENV = "AIBRIX_GATEWAY_WORKER_INDEX"
WORKER_COUNT_ENV = "AIBRIX_GATEWAY_WORKER_COUNT"
_START_TIMEOUT_S = 60.0


class WorkerStartError(RuntimeError):
    """A worker exited before it was ready; its stderr (inherited) says why."""


class _Worker:
    def __init__(self, index: int, proc: asyncio.subprocess.Process, grpc_port: int, http_port: int) -> None:
        self.index, self.proc, self.grpc_port, self.http_port = index, proc, grpc_port, http_port


class Supervisor:
    """Starts the workers, serves the pod's merged HTTP page, and stops everything together."""

    def __init__(self, config: GatewayConfig, config_path: str, workers: int, *,
                 log_level: str = "INFO", kubeconfig: str | None = None) -> None:
        self.config = config
        self._config_path = config_path
        self._count = workers
        self._log_level = log_level
        self._kubeconfig = kubeconfig
        self.workers: list[_Worker] = []
        self._http: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.http_port = 0
        self._hub: asyncio.Task[None] | None = None
        self._hub_stop = asyncio.Event()
        self._hub_dir: str | None = None

    # -- the pod-local hub of the shared routing state --------------------------------------
    async def start_hub(self) -> dict[str, str]:
        """Start the hub that relays routing state between the workers; return the environment
        that points them at it ({} when Redis carries the state)."""
        if self.config.routing_state.redis_url or self._count < 2:
            return {}
        self._hub_dir = tempfile.mkdtemp(prefix="aibrix-gateway-hub-")
        path = os.path.join(self._hub_dir, "hub.sock")
        self._hub_stop = asyncio.Event()
        self._hub = asyncio.create_task(serve_hub(path, self._hub_stop), name="routing-hub")
        for _ in range(100):  # the socket exists once the hub listens
            if os.path.exists(path) or self._hub.done():
                break
            await asyncio.sleep(0.01)
        if self._hub.done():
            self._hub.result()  # raises why it could not start
        return {HUB_SOCKET_ENV: path}

    # -- workers ----------------------------------------------------------------------------
    async def _start_worker(self, index: int, hub_env: dict[str, str]) -> _Worker:
        base = self.config.listen.grpc_port
        args = [sys.executable, "-m", "runtime_components.gateway.cli", "--config", self._config_path,
                "--grpc-port", str(base + index if base else 0), "--http-port", "0", "--host", self.config.listen.host,
                "--worker-index", str(index), "--worker-count", str(self._count), "--log-level", self._log_level]
        if self._kubeconfig:
            args += ["--kubeconfig", self._kubeconfig]
        env = {**os.environ, **hub_env, WORKER_INDEX_ENV: str(index), WORKER_COUNT_ENV: str(self._count)}
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, env=env)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), _START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if not line.startswith(b"{"):
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
            raise WorkerStartError(f"gateway worker {index} did not start (exit status {proc.returncode}); see its error above")
        ready = json.loads(line)
        return _Worker(index, proc, ready["grpcPort"], ready["httpPort"])

    async def start(self) -> None:
        hub_env = await self.start_hub()
        try:
            for index in range(self._count):  # one at a time: a broken config fails once, not N times
                self.workers.append(await self._start_worker(index, hub_env))
        except BaseException:
            await self.stop()
            raise
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.listen.host, self.config.listen.http_port, reuse_port=False)
        await site.start()
        self._http = runner
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def wait_for_a_worker_exit(self) -> int:
        """Block until any worker exits; return its index."""
        waits = {asyncio.ensure_future(w.proc.wait()): w.index for w in self.workers}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[next(iter(done))]

    async def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.returncode is None:
                worker.proc.terminate()
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.proc.wait(), 10)
            except TimeoutError:
                worker.proc.kill()
                await worker.proc.wait()
        if self._http is not None:
            await self._http.cleanup()
        if self._session is not None:
            await self._session.close()
        if self._hub is not None:
            self._hub_stop.set()
            await asyncio.gather(self._hub, return_exceptions=True)
        if self._hub_dir is not None:
            shutil.rmtree(self._hub_dir, ignore_errors=True)

    def ready_line(self) -> str:
        ports = [w.grpc_port for w in self.workers]
        return json.dumps({"event": "ready", "grpcPort": ports[0], "grpcPorts": ports, "httpPort": self.http_port,
                           "workers": self._count})

    # -- the pod's HTTP page ----------------------------------------------------------------
    async def _fetch(self, worker: _Worker, path: str) -> tuple[int, str]:
        assert self._session is not None
        async with self._session.get(f"http://127.0.0.1:{worker.http_port}{path}") as resp:
            return resp.status, await resp.text()

    async def _gather(self, path: str) -> list[tuple[int, str] | BaseException]:
        return await asyncio.gather(*(self._fetch(w, path) for w in self.workers), return_exceptions=True)

    async def _metrics(self, request: web.Request) -> web.Response:
        pages = await self._gather("/metrics")
        failed = [w.index for w, p in zip(self.workers, pages) if isinstance(p, BaseException) or p[0] != 200]
        if failed:  # a partial sum would look like a counter reset to Prometheus
            return web.Response(status=503, text=f"gateway worker(s) {failed} did not answer /metrics\n")
        body = merge_pages([p[1] for p in pages if not isinstance(p, BaseException)])
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def _healthz(self, request: web.Request) -> web.Response:
        reports = await self._gather("/healthz")
        workers: list[Any] = []
        healthy = True
        for worker, report in zip(self.workers, reports):
            if isinstance(report, BaseException) or report[0] != 200:
                healthy = False
                workers.append({"worker": worker.index, "status": "unreachable"})
            else:
                workers.append({"worker": worker.index, **json.loads(report[1])})
        first = workers[0] if workers and "endpoints" in workers[0] else {}
        body = {"status": "ok" if healthy else "degraded", "endpoints": first.get("endpoints", {}),
                "discoveryError": first.get("discoveryError"), "usersFileError": first.get("usersFileError"),
                "workers": workers}
        return web.json_response(body, status=200 if healthy else 503)

    async def _models(self, request: web.Request) -> web.Response:
        status, text = await self._fetch(self.workers[0], "/v1/models")
        return web.Response(status=status, text=text, content_type="application/json")
