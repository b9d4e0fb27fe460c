"""Kubernetes discovery: list + watch each model's pods by label with the official client.

One thread per model (the official client is synchronous) runs

    list pods (labelSelector) -> resourceVersion -> watch from it (bounded timeoutSeconds)
    -> on 410 Gone / error / timeout: list again

and hands the model's complete set of *serving* pods to the event loop after every change.
A pod serves when it is Running, not terminating (no deletionTimestamp), Ready, and has a
pod IP. Its port is the label ``model.aibrix.ai/port`` if set, else the model's ``port``.
A disaggregated model is watched twice: its ``selector`` (decode pods, under the model's
name) and its ``prefillSelector`` (prefill pods on ``prefillPort``, under ``pd.prefill_pool``).
Threads notice ``stop`` within one watch timeout; they are daemons, so exit never waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from aibrix_spec.components.gateway import GatewayModelSpec

from ..endpoints import DiscoveredEndpoint
from ..pd.roles import role_specs

__all__ = ["KubernetesDiscovery", "pod_endpoint", "PORT_LABEL"]

log = logging.getLogger(__name__)
PORT_LABEL = "model.aibrix.ai/port"


def pod_endpoint(pod: Any, model: GatewayModelSpec) -> DiscoveredEndpoint | None:
    """The endpoint a pod serves, or None if it is not ready to serve."""
    meta, status = pod.metadata, pod.status
    if meta is None or status is None or meta.deletion_timestamp is not None:
        return None
    if status.phase != "Running" or not status.pod_ip:
        return None
    ready = any(c.type == "Ready" and c.status == "True" for c in (status.conditions or []))
    if not ready:
        return None
    port_label = (meta.labels or {}).get(PORT_LABEL, "")
    port = int(port_label) if port_label.isdigit() else model.port
    return DiscoveredEndpoint(f"{status.pod_ip}:{port}", meta.name, model.name)


class KubernetesDiscovery:
    """Watches pods of every model; publishes the union whenever one model's set changes."""

    def __init__(self, api_client: Any, namespace: str, models: list[GatewayModelSpec],
                 publish: Callable[[list[DiscoveredEndpoint]], None], watch_timeout_s: int = 30,
                 backoff_s: float = 1.0) -> None:
        from kubernetes import client  # the gateway extra; imported only in kubernetes mode

        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self._models = [m for m in role_specs(models) if m.selector]
        self._publish = publish
        self._watch_timeout_s = watch_timeout_s
        self._backoff_s = backoff_s
        self._by_model: dict[str, list[DiscoveredEndpoint]] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.lists = 0  # how many list calls were made (tests and /healthz read it)
        self.last_error: str | None = None

    @staticmethod
    def selector_text(selector: dict[str, str]) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))

    def _emit(self, model: str, pods: dict[str, Any], spec: GatewayModelSpec) -> None:
        endpoints = [e for e in (pod_endpoint(p, spec) for p in pods.values()) if e is not None]
        endpoints.sort(key=lambda e: e.address)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._apply, model, endpoints)

    def _apply(self, model: str, endpoints: list[DiscoveredEndpoint]) -> None:
        self._by_model[model] = endpoints
        self._publish([e for eps in self._by_model.values() for e in eps])

    def _watch_model(self, spec: GatewayModelSpec) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        selector = self.selector_text(spec.selector)
        while not self._stop.is_set():
            try:
                listing = self._core.list_namespaced_pod(self._namespace, label_selector=selector, _request_timeout=10)
                self.lists += 1
                pods = {p.metadata.name: p for p in listing.items}
                self._emit(spec.name, pods, spec)
                watcher = watch.Watch()
                for event in watcher.stream(
                    self._core.list_namespaced_pod, self._namespace, label_selector=selector,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=self._watch_timeout_s, _request_timeout=self._watch_timeout_s + 5,
                ):
                    if self._stop.is_set():
                        watcher.stop()
                        break
                    kind, pod = event["type"], event["object"]
                    if kind == "ERROR" or not hasattr(pod, "metadata"):
                        break  # e.g. 410 Gone: the resourceVersion expired; list again
                    if kind == "DELETED":
                        pods.pop(pod.metadata.name, None)
                    else:
                        pods[pod.metadata.name] = pod
                    self._emit(spec.name, pods, spec)
                self.last_error = None
            except ApiException as exc:
                self.last_error = f"kubernetes API answered {exc.status} {exc.reason} for pods with {selector}"
                log.warning("%s; retrying", self.last_error)
                self._stop.wait(self._backoff_s)
            except Exception as exc:  # network errors of every kind: keep the last endpoints, retry
                self.last_error = f"watching pods with {selector}: {exc.__class__.__name__}: {exc}"
                log.warning("%s; retrying", self.last_error)
                self._stop.wait(self._backoff_s)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for spec in self._models:
            thread = threading.Thread(target=self._watch_model, args=(spec,), name=f"discovery-{spec.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    async def run(self, stop: asyncio.Event) -> None:
        self.start()
        await stop.wait()

    async def close(self, join_timeout_s: float = 2.0) -> None:
        """Stop watching. A thread blocked in a watch read notices within one watch timeout;
        waiting that long would stall shutdown, so wait briefly (the threads are daemons)."""
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, join_timeout_s)
