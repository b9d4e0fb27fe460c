"""A tiny fake of the two Kubernetes API calls discovery makes: list pods and watch pods.

``GET /api/v1/namespaces/{ns}/pods?labelSelector=k=v,...`` answers a PodList with a
resourceVersion; with ``watch=true`` it streams newline-delimited watch events newer than
``resourceVersion`` until ``timeoutSeconds``. Tests change pods with ``put``/``delete`` and
can expire history (``expire()``) so the next watch gets a 410-style ERROR event.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from typing import Any

from aiohttp import web


def pod(name: str, labels: dict[str, str], ip: str | None = "10.0.0.1", phase: str = "Running", ready: bool = True,
        terminating: bool = False, namespace: str = "llm") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": status}


class FakeKubeApi:
    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.rv = 1
        self.min_rv = 0
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> "FakeKubeApi":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._pods)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- changes made by tests -------------------------------------------------------------
    def put(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            kind = "MODIFIED" if obj["metadata"]["name"] in self.pods else "ADDED"
            self.pods[obj["metadata"]["name"]] = obj
            self.events.append((self.rv, kind, obj))

    def delete(self, name: str) -> None:
        with self._lock:
            self.rv += 1
            obj = self.pods.pop(name)
            self.events.append((self.rv, "DELETED", obj))

    def expire(self) -> None:
        """Forget history: watches from an older resourceVersion get 410 Gone."""
        with self._lock:
            self.min_rv = self.rv

    # -- the API ---------------------------------------------------------------------------
    @staticmethod
    def _matches(obj: dict[str, Any], ns: str, selector: str) -> bool:
        if obj["metadata"].get("namespace") != ns:
            return False
        labels = obj["metadata"].get("labels", {})
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
        return True

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        ns, selector = request.match_info["ns"], request.query.get("labelSelector", "")
        watching = request.query.get("watch") in ("true", "True", "1")
        self.requests.append("watch" if watching else "list")
        if not watching:
            with self._lock:
                items = [p for p in self.pods.values() if self._matches(p, ns, selector)]
                rv = self.rv
            return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": str(rv)},
                                      "items": items})
        since = int(request.query.get("resourceVersion", "0") or 0)
        timeout = float(request.query.get("timeoutSeconds", "5"))
        response = web.StreamResponse(headers={"content-type": "application/json"})
        await response.prepare(request)
        if since < self.min_rv:
            gone = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                "reason": "Expired", "code": 410, "message": "too old resource version"}}
            await response.write(json.dumps(gone).encode() + b"\n")
            return response
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            with self._lock:
                new = [(rv, kind, obj) for rv, kind, obj in self.events if rv > since and self._matches(obj, ns, selector)]
            for rv, kind, obj in new:
                await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                since = rv
            await asyncio.sleep(0.02)
        return response
