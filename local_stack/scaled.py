"""Engines the stack's scaler owns: a local stand-in for the Kubernetes API, one engine process per pod.

Where it sits: used by :mod:`local_stack.runner` when the stack compiles a scaler. Each scaled
workload is a Deployment in ``runtime_components.common.fake_kube`` (the one fake of the
Kubernetes API, served on loopback); the real ``aibrix-scaler run --api-url`` reads its pods
and writes its scale subresource exactly as in a cluster. When the scale changes, the fake
calls :class:`EnginePods`, which starts or stops one ``aibrix-engine-sim`` process per pod
through the runner, and the runner rewrites the gateway's endpoints file.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable

from runtime_components.common.fake_kube import FakeKubeApi, ThreadedServer, Workload

from .localize import EngineGroup

__all__ = ["EnginePods", "LocalKubeApi"]


class EnginePods:
    """The fake API's pod launcher for one workload: the runner's blocking start/stop, off its loop."""

    def __init__(self, group: EngineGroup, start: Callable[[EngineGroup, str], int], stop: Callable[[str], None]) -> None:
        self.group = group
        self._start, self._stop = start, stop

    async def start(self, pod_name: str) -> int:
        return await asyncio.get_running_loop().run_in_executor(None, self._start, self.group, pod_name)

    async def stop(self, pod_name: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._stop, pod_name)


class LocalKubeApi:
    """The fake API with one Deployment per scaled workload, served on 127.0.0.1."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.api = FakeKubeApi()
        self.server: ThreadedServer | None = None

    def add(self, group: EngineGroup, selector: dict[str, str], pods: EnginePods) -> None:
        self.api.add_workload(Workload(self.namespace, group.name, dict(selector), 0, pods))

    def start(self) -> str:
        self.server = ThreadedServer(self.api.app()).start()
        return self.server.url

    def scale(self, name: str, replicas: int) -> None:
        """Set a Deployment's replicas through the scale subresource, as the scaler does."""
        assert self.server is not None
        request = urllib.request.Request(
            f"{self.server.url}/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}/scale",
            data=json.dumps({"spec": {"replicas": replicas}}).encode(), method="PATCH",
            headers={"content-type": "application/merge-patch+json"})
        with urllib.request.urlopen(request, timeout=10):
            pass

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
