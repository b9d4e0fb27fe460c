"""The model's ready-pod set, as every sidecar of the model sees it.

``KubernetesPods`` lists pods by label through the official client and keeps those that are
ready, not terminating and have an IP (the same rule the gateway uses for endpoints);
``StaticPods`` reads ``{"pods": [...]}`` from a file, for local runs and tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

__all__ = ["PodLister", "StaticPods", "KubernetesPods", "is_ready_pod"]


class PodLister(Protocol):
    def ready_pods(self) -> list[str]: ...


class StaticPods:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def ready_pods(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: cannot read the pod list: {exc}") from exc
        pods = data.get("pods") if isinstance(data, dict) else None
        if not isinstance(pods, list) or not all(isinstance(p, str) for p in pods):
            raise ValueError(f'{self.path}: expected {{"pods": ["name", ...]}}')
        return sorted(set(pods))


def is_ready_pod(pod: Any) -> bool:
    """Ready condition true, not being deleted, and an IP assigned."""
    if pod.metadata.deletion_timestamp is not None or not pod.status or not pod.status.pod_ip:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class KubernetesPods:
    def __init__(self, namespace: str, label_selector: str, api: Any | None = None) -> None:
        if api is None:
            from kubernetes import client, config  # heavy: only the in-cluster sidecar needs it

            config.load_incluster_config()
            api = client.CoreV1Api()
        self._api = api
        self.namespace = namespace
        self.label_selector = label_selector

    def ready_pods(self) -> list[str]:
        pods = self._api.list_namespaced_pod(self.namespace, label_selector=self.label_selector)
        return sorted(p.metadata.name for p in pods.items if is_ready_pod(p))
