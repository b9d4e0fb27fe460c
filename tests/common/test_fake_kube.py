"""The fake Kubernetes API's own semantics, over raw HTTP: patches, selectors, watches, nodes,
failing pods and scale-down order. (Its users' tests drive it through the official client.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runtime_components.common.fake_kube import FakeKubeApi, ReadyAtOnce, ThreadedServer, Workload, pod_object

SCALE = "/apis/apps/v1/namespaces/llm/deployments/m/scale"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def api() -> Iterator[tuple[FakeKubeApi, str]]:
    fake = FakeKubeApi()
    with ThreadedServer(fake.app()) as server:
        yield fake, server.url


def call(url: str, method: str = "GET", body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def watch(url: str, **query: str) -> list[dict[str, Any]]:
    """The events of one watch until its timeoutSeconds."""
    params = "&".join(f"{k}={v}" for k, v in {"watch": "true", **query}.items())
    with urllib.request.urlopen(f"{url}&{params}" if "?" in url else f"{url}?{params}", timeout=10) as response:
        return [json.loads(line) for line in response.read().splitlines() if line]


PATCH_CASES = [
    # (content type, body, status, replicas afterwards or message fragment)
    (MERGE, {"spec": {"replicas": 3}}, 200, 3),
    (STRATEGIC, {"spec": {"replicas": 2}}, 200, 2),
    ("application/json-patch+json", [{"op": "replace", "path": "/spec/replicas", "value": 4}], 200, 4),
    ("application/json-patch+json", {"spec": {"replicas": 3}}, 422, "a JSON patch must be a list of operations"),
    (MERGE, {"spec": {"replicas": -1}}, 422, "spec.replicas: Invalid value: -1"),
    ("application/json", {"spec": {"replicas": 3}}, 415, "unsupported content type 'application/json'"),
]


@pytest.mark.parametrize(("content_type", "body", "status", "expected"), PATCH_CASES)
def test_scale_patch_content_types(content_type: str, body: Any, status: int, expected: Any) -> None:
    async def scenario() -> tuple[int, Any, int]:
        cluster = FakeKubeApi()
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


def test_a_pod_that_cannot_start_fails_and_is_removed_first() -> None:
    async def scenario() -> tuple[list[str], str, list[str]]:
        cluster = FakeKubeApi()
        good = Workload("llm", "m", {"app": "m"}, 2, ReadyAtOnce())
        cluster.add_workload(good)
        async with serve(cluster.app()):
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


def test_label_selectors(api: tuple[FakeKubeApi, str]) -> None:
    fake, url = api
    fake.put_pod(pod_object("a", {"app": "m", "tier": "gpu"}, namespace="llm"))
    fake.put_pod(pod_object("b", {"app": "m"}, namespace="llm"))
    fake.put_pod(pod_object("c", {"app": "x"}, namespace="llm"))
    fake.put_pod(pod_object("d", {"app": "m"}, namespace="other"))

    def names(selector: str) -> list[str]:
        status, body = call(f"{url}/api/v1/namespaces/llm/pods?labelSelector={selector}")
        assert status == 200, body
        return [p["metadata"]["name"] for p in body["items"]]

    assert names("app=m") == ["a", "b"]
    assert names("app==m,tier") == ["a"]
    assert names("app!=m") == ["c"]
    assert names("!tier") == ["b", "c"]
    status, body = call(f"{url}/api/v1/namespaces/llm/pods?labelSelector=app%20in%20(m,x)")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == ("unsupported label selector term 'app in (m,x)': only equality (=, ==, !=) "
                               "and existence (key, !key) terms are implemented")


def test_watch_replays_from_a_version_and_expires(api: tuple[FakeKubeApi, str]) -> None:
    fake, url = api
    pods = f"{url}/api/v1/namespaces/llm/pods?labelSelector=app=m"
    fake.put_pod(pod_object("a", {"app": "m"}, namespace="llm"))
    _, listing = call(pods)
    version = listing["metadata"]["resourceVersion"]
    fake.put_pod(pod_object("a", {"app": "m"}, namespace="llm", ready=False))
    fake.put_pod(pod_object("other", {"app": "x"}, namespace="llm"))
    fake.put_pod(pod_object("b", {"app": "m"}, namespace="llm"))
    fake.delete_pod("llm", "a")
    events = watch(pods, resourceVersion=version, timeoutSeconds="0.2")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    # Without a version: the current state as ADDED events.
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in watch(pods, timeoutSeconds="0.2")] == [("ADDED", "b")]
    fake.expire_history()
    (gone,) = watch(pods, resourceVersion=version, timeoutSeconds="0.2")
    assert (gone["type"], gone["object"]["code"], gone["object"]["reason"]) == ("ERROR", 410, "Expired")


def test_node_patches_merge_honour_versions_and_subresources(api: tuple[FakeKubeApi, str]) -> None:
    fake, url = api
    fake.add_node("n1", taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}])
    node_url = f"{url}/api/v1/nodes/n1"
    _, node = call(node_url)
    version = node["metadata"]["resourceVersion"]
    taints = [*node["spec"]["taints"], {"key": "bad", "effect": "NoSchedule"}]
    status, patched = call(node_url, "PATCH", {"metadata": {"resourceVersion": version}, "spec": {"taints": taints},
                                               "status": {"phase": "ignored"}}, MERGE)
    assert status == 200 and patched["spec"]["taints"] == taints and "phase" not in patched["status"]
    status, stale = call(node_url, "PATCH", {"metadata": {"resourceVersion": version}, "spec": {"taints": []}}, MERGE)
    assert (status, stale["reason"]) == (409, "Conflict")
    fake.conflicts_to_inject = 1  # someone else writes between our read and our patch
    fresh = patched["metadata"]["resourceVersion"]
    assert call(node_url, "PATCH", {"metadata": {"resourceVersion": fresh}, "spec": {"taints": []}}, MERGE)[0] == 409
    condition = {"type": "GpuProblem", "status": "True", "reason": "Xid"}
    status, patched = call(node_url + "/status", "PATCH", {"status": {"conditions": [condition]}, "spec": {"taints": []}},
                           STRATEGIC)
    assert status == 200
    assert [c["type"] for c in patched["status"]["conditions"]] == ["Ready", "GpuProblem"]  # merged by type
    assert patched["spec"]["taints"] == taints  # the status subresource leaves spec alone
    assert fake.node_condition("n1", "GpuProblem") == condition
    status, refused = call(node_url, "PATCH", [{"op": "remove", "path": "/spec/taints"}], "application/json-patch+json")
    assert (status, refused["reason"]) == (415, "UnsupportedMediaType")
    assert [(r.method, r.path, r.content_type) for r in fake.requests][-1] == (
        "PATCH", "/api/v1/nodes/n1", "application/json-patch+json")


def test_unknown_objects_and_paths_are_status_errors(api: tuple[FakeKubeApi, str]) -> None:
    _, url = api
    status, body = call(f"{url}/api/v1/nodes/missing")
    assert (status, body["kind"], body["message"]) == (404, "Status", 'nodes "missing" not found')
    status, body = call(f"{url}/api/v1/namespaces/llm/services")
    assert (status, body["kind"], body["reason"]) == (404, "Status", "NotFound")
