"""An in-memory Kubernetes API server (aiohttp): the one fake every component and test talks to.

It serves the union of what our components call, over the real HTTP API, so the official
client works against it unchanged:

    GET   /api/v1/namespaces/{ns}/pods?labelSelector=...[&watch=true&resourceVersion=N&timeoutSeconds=S]
    GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale        (scaler)
    PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale        merge, strategic or JSON patch
    POST  /api/v1/namespaces/{ns}/events                                (scaler)
    GET, PUT /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name} (scaler leader election)
    POST  /apis/coordination.k8s.io/v1/namespaces/{ns}/leases
    GET, PATCH /api/v1/nodes/{name}   and   PATCH /api/v1/nodes/{name}/status   (diag)

Semantics kept: errors are `Status` objects (400, 404, 409, 415, 422), so clients raise the
ApiExceptions they would against a cluster; one resourceVersion counter orders every change;
leases and node patches honour `metadata.resourceVersion` (409 Conflict); a pod watch replays
changes newer than its resourceVersion, then streams until `timeoutSeconds`, and answers a
410 `Expired` event once `expire_history()` dropped what it asks for.

Deployments are `Workload`s: patching their scale reconciles pods towards `spec.replicas`, and
a `PodLauncher` turns each pod into something real (the scaler's local runner starts an engine
process on 127.0.0.1); the pod turns Ready when its launch completes.

State may be changed from another thread (tests that drive a synchronous client): every change
takes one lock and wakes watchers with `call_soon_threadsafe`. Workload reconciling runs on the
server's event loop. `requests` records every call (method, path, content type, query, body).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from .objects import (
    PatchError,
    Requirement,
    apply_node_patch,
    matches,
    node_object,
    parse_selector,
    pod_object,
    pod_status,
    replicas_from_patch,
    status_object,
)

__all__ = ["PORT_LABEL", "FakeKubeApi", "PodLauncher", "ReadyAtOnce", "Recorded", "Workload"]

PORT_LABEL = "model.aibrix.ai/port"  # a launched pod's port on 127.0.0.1 (the real port is the same on every pod)

log = logging.getLogger("aibrix.fake_kube")
PodKey = tuple[str, str]  # (namespace, name)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    """A Deployment as far as its scale subresource and its pods go."""

    namespace: str
    name: str
    labels: dict[str, str]
    replicas: int
    launcher: PodLauncher = field(default_factory=ReadyAtOnce)


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    content_type: str
    query: dict[str, str]
    body: Any  # parsed JSON, or None


@dataclass(frozen=True, eq=False)  # hashed by identity: one entry per open watch
class _Watcher:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[int, str, dict[str, Any]]]
    namespace: str
    selector: list[Requirement]


def _error(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_object(code, reason, message), status=code)


def _not_found(kind: str, name: str) -> web.Response:
    return _error(404, "NotFound", f'{kind} "{name}" not found')


class FakeKubeApi:
    """State and HTTP handlers. Serve `app()` on the caller's loop, or `serve_in_thread()` it."""

    def __init__(self) -> None:
        self.pods: dict[PodKey, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.workloads: dict[PodKey, Workload] = {}
        self.leases: dict[PodKey, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # core/v1 Event objects created by clients
        self.requests: list[Recorded] = []
        self.conflicts_to_inject = 0  # the next N node patches find the node changed by someone else
        self._lock = threading.RLock()
        self._version = 1
        self._history: list[tuple[int, str, dict[str, Any]]] = []  # pod watch events (rv, type, pod)
        self._oldest_watchable = 0
        self._watchers: set[_Watcher] = set()
        self._pod_numbers = itertools.count(1)
        self._pod_tasks: dict[PodKey, asyncio.Task[None]] = {}
        self._reconcile_lock: asyncio.Lock | None = None
        self._stop_tasks: set[asyncio.Task[None]] = set()

    # ---- setup and changes made by the owner --------------------------------------------
    def add_workload(self, workload: Workload) -> None:
        self.workloads[(workload.namespace, workload.name)] = workload

    def add_node(self, name: str, *, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        with self._lock:
            node = node_object(name, taints=taints)
            node["metadata"]["resourceVersion"] = self._next_version()
            self.nodes[name] = node
            return node

    def put_pod(self, pod: dict[str, Any]) -> None:
        """Create or replace a pod (watchers see ADDED or MODIFIED)."""
        meta = pod["metadata"]
        self._set_pod((meta.get("namespace", "default"), meta["name"]), pod)

    def delete_pod(self, namespace: str, name: str) -> None:
        """Remove a pod at once (watchers see DELETED)."""
        with self._lock:
            pod = self.pods.pop((namespace, name))
            self._publish("DELETED", pod, self._next_version())

    def expire_history(self) -> None:
        """Forget the watch history: a watch from an older resourceVersion gets 410 Expired."""
        with self._lock:
            self._history.clear()
            self._oldest_watchable = self._version

    def node_condition(self, node: str, condition_type: str) -> dict[str, Any] | None:
        conditions = self.nodes[node]["status"].get("conditions", [])
        return next((c for c in conditions if c["type"] == condition_type), None)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_and_map_errors])
        add = app.router
        add.add_get("/api/v1/namespaces/{ns}/pods", self._list_or_watch_pods)
        add.add_get("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", self._get_scale)
        add.add_patch("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", self._patch_scale)
        add.add_post("/api/v1/namespaces/{ns}/events", self._create_event)
        add.add_get("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", self._get_lease)
        add.add_put("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", self._put_lease)
        add.add_post("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", self._create_lease)
        add.add_get("/api/v1/nodes/{name}", self._get_node)
        add.add_patch("/api/v1/nodes/{name}", self._patch_node)
        add.add_patch("/api/v1/nodes/{name}/status", self._patch_node)
        app.on_cleanup.append(self._stop_all)
        return app

    # ---- versions and pod watch events -------------------------------------------------
    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _set_pod(self, key: PodKey, pod: dict[str, Any]) -> None:
        with self._lock:
            pod = copy.deepcopy(pod)
            pod["metadata"]["namespace"] = key[0]
            pod["metadata"]["resourceVersion"] = rv = self._next_version()
            kind = "MODIFIED" if key in self.pods else "ADDED"
            self.pods[key] = pod
            self._publish(kind, pod, rv)

    def _publish(self, kind: str, pod: dict[str, Any], rv: str) -> None:
        event = (int(rv), kind, copy.deepcopy(pod))
        self._history.append(event)
        for watcher in list(self._watchers):
            if pod["metadata"]["namespace"] == watcher.namespace and matches(pod["metadata"].get("labels", {}),
                                                                             watcher.selector):
                try:
                    watcher.loop.call_soon_threadsafe(watcher.queue.put_nowait, event)
                except RuntimeError:  # that watcher's loop is closed
                    self._watchers.discard(watcher)

    # ---- pods ----------------------------------------------------------------------------
    async def _list_or_watch_pods(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        try:
            selector = parse_selector(request.query.get("labelSelector", ""))
        except ValueError as error:
            return _error(400, "BadRequest", str(error))
        if request.query.get("watch") in ("true", "True", "1"):
            return await self._watch_pods(request, ns, selector)
        with self._lock:
            items = [copy.deepcopy(pod) for (pod_ns, _), pod in sorted(self.pods.items())
                     if pod_ns == ns and matches(pod["metadata"].get("labels", {}), selector)]
            version = str(self._version)
        return web.json_response({"apiVersion": "v1", "kind": "PodList",
                                  "metadata": {"resourceVersion": version}, "items": items})

    async def _watch_pods(self, request: web.Request, ns: str, selector: list[Requirement]) -> web.StreamResponse:
        try:
            since = int(request.query.get("resourceVersion") or 0)
            timeout = float(request.query.get("timeoutSeconds") or 1800)
        except ValueError as error:
            return _error(400, "BadRequest", f"resourceVersion and timeoutSeconds must be numbers: {error}")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        watcher = _Watcher(asyncio.get_running_loop(), asyncio.Queue(), ns, selector)
        with self._lock:  # never held across an await
            oldest = self._oldest_watchable
            if since and since < oldest:
                backlog = None
            elif since:  # replay what happened after the client's version
                backlog = [e for e in self._history if e[0] > since and e[2]["metadata"]["namespace"] == ns
                           and matches(e[2]["metadata"].get("labels", {}), selector)]
            else:  # no version: the current state, as synthetic ADDED events
                backlog = [(int(p["metadata"]["resourceVersion"]), "ADDED", copy.deepcopy(p))
                           for (pod_ns, _), p in sorted(self.pods.items())
                           if pod_ns == ns and matches(p["metadata"].get("labels", {}), selector)]
            if backlog is not None:
                self._watchers.add(watcher)
        if backlog is None:
            gone = status_object(410, "Expired", f"too old resource version: {since} ({oldest})")
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return response
        try:
            for event in backlog:
                watcher.queue.put_nowait(event)
            deadline = watcher.loop.time() + timeout
            while (remaining := deadline - watcher.loop.time()) > 0:
                try:
                    _, kind, pod = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                await response.write(json.dumps({"type": kind, "object": pod}).encode() + b"\n")
        finally:
            with self._lock:
                self._watchers.discard(watcher)
        return response

    # ---- workloads: scale subresource and their pods ------------------------------------
    async def reconcile(self, workload: Workload) -> None:
        """Create or delete pods until the workload has `replicas` of them."""
        if self._reconcile_lock is None:
            self._reconcile_lock = asyncio.Lock()
        async with self._reconcile_lock:
            mine = self._workload_pods(workload)
            # Like a ReplicaSet: remove pods that are not ready first, then the newest.
            mine.sort(key=lambda k: k[1], reverse=True)
            mine.sort(key=lambda k: self.pods[k]["status"]["phase"] == "Running")
            for key in mine[:max(0, len(mine) - workload.replicas)]:
                self._delete_workload_pod(key, workload)
            for _ in range(workload.replicas - len(mine)):
                name = f"{workload.name}-{next(self._pod_numbers):05d}"
                key = (workload.namespace, name)
                self._set_pod(key, pod_object(name, workload.labels, namespace=workload.namespace, ip=None,
                                              phase="Pending", ready=False))
                self._pod_tasks[key] = asyncio.create_task(self._launch(key, workload))

    def _workload_pods(self, workload: Workload) -> list[PodKey]:
        selector: list[Requirement] = [(key, "=", value) for key, value in workload.labels.items()]
        with self._lock:
            return [k for k, pod in self.pods.items()
                    if k[0] == workload.namespace and matches(pod["metadata"]["labels"], selector)]

    async def _launch(self, key: PodKey, workload: Workload) -> None:
        try:
            port = await workload.launcher.start(key[1])
        except Exception as error:  # a pod whose process cannot start fails, like a crashing container
            log.error("pod %s/%s failed to start: %s", key[0], key[1], error)
            failed = {"phase": "Failed", "message": str(error)[:500], "conditions": [{"type": "Ready", "status": "False"}]}
            self._update_pod(key, lambda pod: pod.update(status=failed))
            return
        if key not in self.pods:  # deleted while starting
            await workload.launcher.stop(key[1])
            return

        def ready(pod: dict[str, Any]) -> None:
            pod["metadata"]["labels"][PORT_LABEL] = str(port)
            pod["status"] = pod_status(ip="127.0.0.1", phase="Running", ready=True)

        self._update_pod(key, ready)

    def _update_pod(self, key: PodKey, change: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            pod = self.pods.get(key)
            if pod is None:
                return
            pod = copy.deepcopy(pod)
            change(pod)
            self._set_pod(key, pod)

    def _delete_workload_pod(self, key: PodKey, workload: Workload) -> None:
        if key in self.pods:
            self.delete_pod(*key)
        task = self._pod_tasks.pop(key, None)
        if task is not None and task.done():
            task = asyncio.create_task(workload.launcher.stop(key[1]))
        # A task still starting sees the pod gone and stops what it started; either way it is
        # kept until it ends, so shutting down waits for it instead of destroying it pending.
        if task is not None:
            self._stop_tasks.add(task)
            task.add_done_callback(self._stop_tasks.discard)

    async def _stop_all(self, _app: web.Application) -> None:
        # Stop every workload pod's process; the recorded replicas stay as they were (tests read them).
        for workload in self.workloads.values():
            for key in self._workload_pods(workload):
                self._delete_workload_pod(key, workload)
        await asyncio.gather(*self._pod_tasks.values(), *self._stop_tasks, return_exceptions=True)

    def _scale_json(self, workload: Workload) -> dict[str, Any]:
        ready = sum(1 for key in self._workload_pods(workload) if self.pods[key]["status"]["phase"] == "Running")
        selector = ",".join(f"{k}={v}" for k, v in sorted(workload.labels.items()))
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": workload.name, "namespace": workload.namespace},
                "spec": {"replicas": workload.replicas},
                "status": {"replicas": ready, "selector": selector}}

    async def _get_scale(self, request: web.Request) -> web.Response:
        workload = self.workloads.get((request.match_info["ns"], request.match_info["name"]))
        if workload is None:
            return _not_found("deployments.apps", request.match_info["name"])
        return web.json_response(self._scale_json(workload))

    async def _patch_scale(self, request: web.Request) -> web.Response:
        workload = self.workloads.get((request.match_info["ns"], request.match_info["name"]))
        if workload is None:
            return _not_found("deployments.apps", request.match_info["name"])
        try:
            workload.replicas = replicas_from_patch(request.content_type, await request.json())
        except PatchError as error:
            return _error(error.code, "UnsupportedMediaType" if error.code == 415 else "Invalid", str(error))
        await self.reconcile(workload)
        return web.json_response(self._scale_json(workload))

    # ---- events and leases ---------------------------------------------------------------
    async def _create_event(self, request: web.Request) -> web.Response:
        event = await request.json()
        with self._lock:
            meta = event.setdefault("metadata", {})
            version = self._next_version()
            meta.setdefault("name", f"{meta.get('generateName', 'event.')}{int(version):08x}")
            meta["namespace"] = request.match_info["ns"]
            meta["resourceVersion"] = version
            self.events.append(event)
        return web.json_response(event, status=201)

    async def _get_lease(self, request: web.Request) -> web.Response:
        lease = self.leases.get((request.match_info["ns"], request.match_info["name"]))
        if lease is None:
            return _not_found("leases.coordination.k8s.io", request.match_info["name"])
        return web.json_response(lease)

    async def _create_lease(self, request: web.Request) -> web.Response:
        lease = await request.json()
        key = (request.match_info["ns"], lease["metadata"]["name"])
        with self._lock:
            if key in self.leases:
                return _error(409, "AlreadyExists", f'leases.coordination.k8s.io "{key[1]}" already exists')
            lease["metadata"]["resourceVersion"] = self._next_version()
            self.leases[key] = lease
        return web.json_response(lease, status=201)

    async def _put_lease(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        lease = await request.json()
        with self._lock:
            current = self.leases.get(key)
            if current is None:
                return _not_found("leases.coordination.k8s.io", key[1])
            if lease.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return _error(409, "Conflict", "Operation cannot be fulfilled on leases: the object has been modified")
            lease["metadata"]["resourceVersion"] = self._next_version()
            self.leases[key] = lease
        return web.json_response(lease)

    # ---- nodes ---------------------------------------------------------------------------
    async def _get_node(self, request: web.Request) -> web.Response:
        with self._lock:
            node = self.nodes.get(request.match_info["name"])
            return _not_found("nodes", request.match_info["name"]) if node is None else web.json_response(node)

    async def _patch_node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        subresource = "status" if request.path.endswith("/status") else ""
        body = await request.json()
        with self._lock:
            node = self.nodes.get(name)
            if node is None:
                return _not_found("nodes", name)
            if not subresource and self.conflicts_to_inject:
                self.conflicts_to_inject -= 1
                node["metadata"]["resourceVersion"] = self._next_version()  # someone else changed it meanwhile
            wanted = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            if wanted is not None and wanted != node["metadata"]["resourceVersion"]:
                return _error(409, "Conflict", f'Operation cannot be fulfilled on nodes "{name}": '
                                               "the object has been modified; please apply your changes to the latest version")
            try:
                patched = apply_node_patch(node, request.content_type, body, subresource=subresource)
            except PatchError as error:
                return _error(error.code, "UnsupportedMediaType" if error.code == 415 else "Invalid", str(error))
            patched["metadata"]["resourceVersion"] = self._next_version()
            self.nodes[name] = patched
            return web.json_response(patched)

    # ---- every request -------------------------------------------------------------------
    @web.middleware
    async def _record_and_map_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            try:
                body = json.loads(await request.read() or b"null")
            except json.JSONDecodeError:
                return _error(400, "BadRequest", "the request body is not JSON")
        with self._lock:
            self.requests.append(Recorded(request.method, request.path, request.content_type,
                                          dict(request.query), body))
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _error(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        except web.HTTPMethodNotAllowed:
            return _error(405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}")
