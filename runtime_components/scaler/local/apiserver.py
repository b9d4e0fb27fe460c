"""A small in-memory Kubernetes API server (aiohttp) with exactly the endpoints the scaler calls.

    GET   /api/v1/namespaces/{ns}/pods?labelSelector=k=v,...
    GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale
    PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale   merge, strategic or JSON patch
    POST  /api/v1/namespaces/{ns}/events
    GET, PUT /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}
    POST  /apis/coordination.k8s.io/v1/namespaces/{ns}/leases

Errors are Kubernetes `Status` objects (404 NotFound, 409 Conflict, 415, 422 Invalid), so the
official client raises the same `ApiException`s it would against a real cluster. Leases use
`resourceVersion` for optimistic concurrency. A Deployment's pods are created and deleted by
reconciling towards `spec.replicas`; a `PodLauncher` turns a pod into something real (an
engine process on 127.0.0.1) and the pod turns Ready when its launch completes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

__all__ = ["FakeCluster", "PodLauncher", "ReadyAtOnce", "Workload"]

PORT_LABEL = "model.aibrix.ai/port"

log = logging.getLogger("aibrix.scaler.local")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


class PodLauncher(Protocol):
    """Starts and stops what stands behind a pod."""

    async def start(self, pod_name: str) -> int:
        """Start the pod's process; return its port on 127.0.0.1 once it serves."""

    async def stop(self, pod_name: str) -> None:
        """Stop the pod's process."""


class ReadyAtOnce:
    """A launcher with nothing behind the pods: each is Ready at once on a fixed port."""

    def __init__(self, port: int = 8000) -> None:
        self.port = port

    async def start(self, pod_name: str) -> int:
        return self.port

    async def stop(self, pod_name: str) -> None:
        return None


@dataclass
class Workload:
    """A Deployment as far as the scaler sees it."""

    namespace: str
    name: str
    labels: dict[str, str]
    replicas: int
    launcher: PodLauncher = field(default_factory=ReadyAtOnce)


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    return web.json_response(body, status=code)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeCluster:
    """State and HTTP handlers; `requests` logs (method, path, content type) of every call."""

    def __init__(self) -> None:
        self.workloads: dict[tuple[str, str], Workload] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, str]] = []
        self._versions = itertools.count(1)
        self._pod_numbers = itertools.count(1)
        self._pod_tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._stop_tasks: set[asyncio.Task[None]] = set()

    # ---- setup -------------------------------------------------------------------------
    def add_workload(self, workload: Workload) -> None:
        self.workloads[(workload.namespace, workload.name)] = workload

    def add_pod(self, namespace: str, name: str, labels: dict[str, str], *, ip: str, ready: bool) -> None:
        """Place a pod directly (tests of discovery without a workload)."""
        self.pods[(namespace, name)] = self._pod_json(namespace, name, labels, ip=ip, ready=ready)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._log_middleware])
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._list_pods)
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", self._get_scale)
        app.router.add_patch("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", self._patch_scale)
        app.router.add_post("/api/v1/namespaces/{ns}/events", self._create_event)
        app.router.add_get("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", self._get_lease)
        app.router.add_put("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", self._put_lease)
        app.router.add_post("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", self._create_lease)
        app.on_cleanup.append(self._stop_all)
        return app

    async def reconcile(self, workload: Workload) -> None:
        """Create or delete pods until the workload has `replicas` of them."""
        async with self._lock:
            mine = [k for k, pod in self.pods.items()
                    if k[0] == workload.namespace and _matches(pod["metadata"]["labels"], workload.labels)]
            # Like a ReplicaSet: remove pods that are not ready first, then the newest.
            mine.sort(key=lambda k: k[1], reverse=True)
            mine.sort(key=lambda k: self.pods[k]["status"]["phase"] == "Running")
            surplus = len(mine) - workload.replicas
            for key in mine[:max(0, surplus)]:
                self._delete_pod(key, workload)
            for _ in range(workload.replicas - len(mine)):
                name = f"{workload.name}-{next(self._pod_numbers):05d}"
                key = (workload.namespace, name)
                self.pods[key] = self._pod_json(workload.namespace, name, workload.labels, ip="", ready=False)
                self._pod_tasks[key] = asyncio.create_task(self._launch(key, workload))

    # ---- pods --------------------------------------------------------------------------
    async def _launch(self, key: tuple[str, str], workload: Workload) -> None:
        try:
            port = await workload.launcher.start(key[1])
        except Exception as error:  # a pod whose process cannot start fails, like a crashing container
            log.error("pod %s/%s failed to start: %s", key[0], key[1], error)
            pod = self.pods.get(key)
            if pod is not None:
                pod["status"] = {"phase": "Failed", "message": str(error)[:500],
                                 "conditions": [{"type": "Ready", "status": "False"}]}
            return
        pod = self.pods.get(key)
        if pod is None:  # deleted while starting
            await workload.launcher.stop(key[1])
            return
        pod["metadata"]["labels"][PORT_LABEL] = str(port)
        pod["status"] = _pod_status(ip="127.0.0.1", ready=True)

    def _delete_pod(self, key: tuple[str, str], workload: Workload) -> None:
        self.pods.pop(key, None)
        task = self._pod_tasks.pop(key, None)
        if task is not None and task.done():
            stopping = asyncio.create_task(workload.launcher.stop(key[1]))
            self._stop_tasks.add(stopping)
            stopping.add_done_callback(self._stop_tasks.discard)
        # A task still starting sees the pod gone and stops what it started.

    async def _stop_all(self, _app: web.Application) -> None:
        # Stop every pod's process; the recorded replicas stay as they were (tests read them).
        async with self._lock:
            for workload in self.workloads.values():
                for key in [k for k, pod in self.pods.items()
                            if k[0] == workload.namespace and _matches(pod["metadata"]["labels"], workload.labels)]:
                    self._delete_pod(key, workload)
        pending = list(self._pod_tasks.values()) + list(self._stop_tasks)
        await asyncio.gather(*pending, return_exceptions=True)

    def _pod_json(self, ns: str, name: str, labels: dict[str, str], *, ip: str, ready: bool) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels), "creationTimestamp": _now()},
            "spec": {"containers": [{"name": "engine", "image": "aibrix-engine-sim"}]},
            "status": _pod_status(ip=ip, ready=ready),
        }

    async def _list_pods(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        try:
            selector = _parse_selector(request.query.get("labelSelector", ""))
        except ValueError as error:
            return _status(400, "BadRequest", str(error))
        items = [pod for (pod_ns, _), pod in sorted(self.pods.items())
                 if pod_ns == ns and _matches(pod["metadata"]["labels"], selector)]
        body = {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": str(next(self._versions))},
                "items": items}
        return web.json_response(body)

    # ---- scale -------------------------------------------------------------------------
    def _scale_json(self, workload: Workload) -> dict[str, Any]:
        ready = sum(1 for (ns, _), pod in self.pods.items()
                    if ns == workload.namespace and _matches(pod["metadata"]["labels"], workload.labels)
                    and pod["status"]["phase"] == "Running")
        selector = ",".join(f"{k}={v}" for k, v in sorted(workload.labels.items()))
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": workload.name, "namespace": workload.namespace},
                "spec": {"replicas": workload.replicas},
                "status": {"replicas": ready, "selector": selector}}

    def _workload(self, request: web.Request) -> Workload | None:
        return self.workloads.get((request.match_info["ns"], request.match_info["name"]))

    async def _get_scale(self, request: web.Request) -> web.Response:
        workload = self._workload(request)
        if workload is None:
            return _status(404, "NotFound", f'deployments.apps "{request.match_info["name"]}" not found')
        return web.json_response(self._scale_json(workload))

    async def _patch_scale(self, request: web.Request) -> web.Response:
        workload = self._workload(request)
        if workload is None:
            return _status(404, "NotFound", f'deployments.apps "{request.match_info["name"]}" not found')
        try:
            replicas = _replicas_from_patch(request.content_type, await request.json())
        except (ValueError, json.JSONDecodeError) as error:
            code = 415 if "content type" in str(error) else 422
            return _status(code, "UnsupportedMediaType" if code == 415 else "Invalid", str(error))
        workload.replicas = replicas
        await self.reconcile(workload)
        return web.json_response(self._scale_json(workload))

    # ---- events and leases -------------------------------------------------------------
    async def _create_event(self, request: web.Request) -> web.Response:
        event = await request.json()
        meta = event.setdefault("metadata", {})
        meta.setdefault("name", f"{meta.get('generateName', 'event.')}{next(self._versions):08x}")
        meta["namespace"] = request.match_info["ns"]
        self.events.append(event)
        return web.json_response(event, status=201)

    async def _get_lease(self, request: web.Request) -> web.Response:
        lease = self.leases.get((request.match_info["ns"], request.match_info["name"]))
        if lease is None:
            return _status(404, "NotFound", f'leases.coordination.k8s.io "{request.match_info["name"]}" not found')
        return web.json_response(lease)

    async def _create_lease(self, request: web.Request) -> web.Response:
        lease = await request.json()
        key = (request.match_info["ns"], lease["metadata"]["name"])
        if key in self.leases:
            return _status(409, "AlreadyExists", f'leases.coordination.k8s.io "{key[1]}" already exists')
        lease["metadata"]["resourceVersion"] = str(next(self._versions))
        self.leases[key] = lease
        return web.json_response(lease, status=201)

    async def _put_lease(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        current = self.leases.get(key)
        if current is None:
            return _status(404, "NotFound", f'leases.coordination.k8s.io "{key[1]}" not found')
        lease = await request.json()
        if lease.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", "Operation cannot be fulfilled on leases: the object has been modified")
        lease["metadata"]["resourceVersion"] = str(next(self._versions))
        self.leases[key] = lease
        return web.json_response(lease)

    @web.middleware
    async def _log_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.content_type))
        return await handler(request)


def _pod_status(*, ip: str, ready: bool) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Running" if ready else "Pending",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    return status


def _parse_selector(text: str) -> dict[str, str]:
    selector: dict[str, str] = {}
    for term in filter(None, text.split(",")):
        key, sep, value = term.partition("=")
        if not sep or not _LABEL_KEY.fullmatch(key) or value.startswith("="):
            raise ValueError(f"unsupported label selector term {term!r}: only key=value is implemented")
        selector[key] = value
    return selector


def _matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _replicas_from_patch(content_type: str, body: Any) -> int:
    if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        value = body.get("spec", {}).get("replicas") if isinstance(body, dict) else None
    elif content_type == "application/json-patch+json":
        if not isinstance(body, list):
            raise ValueError("a JSON patch must be a list of operations")
        ops = [op for op in body if op.get("path") == "/spec/replicas" and op.get("op") in ("replace", "add")]
        value = ops[-1].get("value") if ops else None
    else:
        raise ValueError(f"unsupported content type {content_type!r} for PATCH")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"spec.replicas: Invalid value: {value!r}: must be a non-negative integer")
    return value
