"""The local API server's own semantics: patch content types, failing pods, scale-down order."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from runtime_components.scaler.local.apiserver import FakeCluster, ReadyAtOnce, Workload
from tests.scaler.helpers import serve

SCALE = "/apis/apps/v1/namespaces/llm/deployments/m/scale"

PATCH_CASES = [
    # (content type, body, status, replicas afterwards or message fragment)
    ("application/merge-patch+json", {"spec": {"replicas": 3}}, 200, 3),
    ("application/strategic-merge-patch+json", {"spec": {"replicas": 2}}, 200, 2),
    ("application/json-patch+json", [{"op": "replace", "path": "/spec/replicas", "value": 4}], 200, 4),
    ("application/json-patch+json", {"spec": {"replicas": 3}}, 422, "a JSON patch must be a list of operations"),
    ("application/merge-patch+json", {"spec": {"replicas": -1}}, 422, "spec.replicas: Invalid value: -1"),
    ("application/json", {"spec": {"replicas": 3}}, 415, "unsupported content type 'application/json'"),
]


@pytest.mark.parametrize(("content_type", "body", "status", "expected"), PATCH_CASES)
def test_scale_patch_content_types(content_type, body, status, expected):
    async def scenario():
        cluster = FakeCluster()
        cluster.add_workload(Workload("llm", "m", {"app": "m"}, 1, ReadyAtOnce()))
        async with serve(cluster.app()) as url, aiohttp.ClientSession() as session:
            async with session.patch(url + SCALE, json=body, headers={"Content-Type": content_type}) as response:
                return response.status, await response.json(), cluster.workloads[("llm", "m")].replicas
    got_status, payload, replicas = asyncio.run(scenario())
    assert got_status == status
    if status == 200:
        assert payload["spec"]["replicas"] == expected == replicas
    else:
        assert payload["kind"] == "Status" and expected in payload["message"]
        assert replicas == 1


class BrokenLauncher:
    async def start(self, pod_name: str) -> int:
        raise RuntimeError("engine exited with 2: bad flag")

    async def stop(self, pod_name: str) -> None:
        return None


def test_a_pod_that_cannot_start_fails_and_is_removed_first():
    async def scenario():
        cluster = FakeCluster()
        good = Workload("llm", "m", {"app": "m"}, 2, ReadyAtOnce())
        cluster.add_workload(good)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(serve(cluster.app()))
            await cluster.reconcile(good)
            await asyncio.sleep(0.05)
            good.launcher = BrokenLauncher()
            good.replicas = 3
            await cluster.reconcile(good)
            await asyncio.sleep(0.05)
            phases = sorted(p["status"]["phase"] for p in cluster.pods.values())
            failed_message = next(p["status"]["message"] for p in cluster.pods.values() if p["status"]["phase"] == "Failed")
            good.launcher = ReadyAtOnce()
            good.replicas = 2
            await cluster.reconcile(good)
            after = sorted(p["status"]["phase"] for p in cluster.pods.values())
        return phases, failed_message, after
    phases, message, after = asyncio.run(scenario())
    assert phases == ["Failed", "Running", "Running"]
    assert message == "engine exited with 2: bad flag"
    assert after == ["Running", "Running"]


def test_unsupported_label_selector_is_a_bad_request():
    async def scenario():
        cluster = FakeCluster()
        async with serve(cluster.app()) as url, aiohttp.ClientSession() as session:
            async with session.get(url + "/api/v1/namespaces/llm/pods", params={"labelSelector": "app!=m"}) as r:
                return r.status, await r.json()
    status, payload = asyncio.run(scenario())
    assert status == 400
    assert payload["message"] == "unsupported label selector term 'app!=m': only key=value is implemented"
