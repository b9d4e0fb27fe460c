"""Kubernetes discovery with the official client against the project's fake Kubernetes API."""

import asyncio
import time
from typing import Any

from kubernetes import client

from aibrix_spec.components.gateway import GatewayModelSpec
from runtime_components.common.fake_kube import FakeKubeApi, ThreadedServer, pod_object
from runtime_components.gateway.discovery.kubernetes import KubernetesDiscovery

LABELS = {"model.aibrix.ai/name": "m"}


def pod(name: str, labels: dict[str, str], *, namespace: str = "llm", **fields: Any) -> dict[str, Any]:
    return pod_object(name, labels, namespace=namespace, **fields)


def test_list_and_watch_track_serving_pods():
    api = FakeKubeApi()
    server = ThreadedServer(api.app()).start()
    api.put_pod(pod("ready", LABELS, ip="10.0.0.1"))
    api.put_pod(pod("not-ready", LABELS, ip="10.0.0.2", phase="Running", ready=False))
    api.put_pod(pod("terminating", LABELS, ip="10.0.0.3", terminating=True))
    api.put_pod(pod("pending", LABELS, ip=None, phase="Pending", ready=False))
    api.put_pod(pod("custom-port", {**LABELS, "model.aibrix.ai/port": "9000"}, ip="10.0.0.5"))
    api.put_pod(pod("other-model", {"model.aibrix.ai/name": "x"}, ip="10.0.0.6"))
    api.put_pod(pod("other-ns", LABELS, ip="10.0.0.7", namespace="elsewhere"))
    published: list[list[str]] = []
    config = client.Configuration()
    config.host = server.url
    models = [GatewayModelSpec(name="m", selector=LABELS, port=8000)]

    def latest() -> list[str]:
        return published[-1] if published else []

    async def wait_until(predicate, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not predicate():
            await asyncio.sleep(0.02)
        return predicate()

    async def run():
        discovery = KubernetesDiscovery(client.ApiClient(config), "llm", models,
                                        lambda eps: published.append(sorted(e.address for e in eps)), watch_timeout_s=1)
        discovery.start()
        try:
            assert await wait_until(lambda: latest() == ["10.0.0.1:8000", "10.0.0.5:9000"]), published
            api.put_pod(pod("not-ready", LABELS, ip="10.0.0.2"))  # becomes Ready: joins
            assert await wait_until(lambda: "10.0.0.2:8000" in latest()), published
            api.put_pod(pod("new", LABELS, ip="10.0.0.8"))  # a new pod joins
            assert await wait_until(lambda: "10.0.0.8:8000" in latest()), published
            api.delete_pod("llm", "ready")  # deleted: leaves
            assert await wait_until(lambda: "10.0.0.1:8000" not in latest()), published
            api.put_pod(pod("new", LABELS, ip="10.0.0.8", terminating=True))  # terminating: leaves
            assert await wait_until(lambda: "10.0.0.8:8000" not in latest()), published
            lists_before = discovery.lists
            api.expire_history()  # history gone: the next watch errors with 410 and discovery lists again
            api.put_pod(pod("after-expiry", LABELS, ip="10.0.0.9"))
            assert await wait_until(lambda: "10.0.0.9:8000" in latest() and discovery.lists > lists_before), published
        finally:
            await discovery.close(join_timeout_s=5)

    try:
        asyncio.run(run())
        assert latest() == ["10.0.0.2:8000", "10.0.0.5:9000", "10.0.0.9:8000"]
        watches = [r.query.get("watch", "").lower() == "true" for r in api.requests]
        assert True in watches and False in watches
    finally:
        server.close()


def test_unreachable_api_keeps_retrying_and_reports_the_error():
    config = client.Configuration()
    config.host = "http://127.0.0.1:9"  # nothing listens on the discard port
    published: list[object] = []

    async def run():
        discovery = KubernetesDiscovery(client.ApiClient(config), "llm", [GatewayModelSpec(name="m", selector=LABELS)],
                                        published.append, watch_timeout_s=1, backoff_s=0.1)
        discovery.start()
        deadline = time.monotonic() + 10
        while discovery.last_error is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await discovery.close()
        return discovery.last_error

    error = asyncio.run(run())
    assert error is not None and "watching pods with model.aibrix.ai/name=m" in error
    assert published == []


def test_cli_in_kubernetes_mode_with_a_kubeconfig(tmp_path):
    import json

    import yaml

    from .harness import GatewayProcess, wait_for

    api = FakeKubeApi()
    server = ThreadedServer(api.app()).start()
    api.put_pod(pod("engine-0", LABELS, ip="10.0.0.1"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "fake", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }))
    gateway = None
    try:
        gateway = GatewayProcess({"discovery": {"mode": "kubernetes", "namespace": "llm"},
                                  "models": [{"name": "m", "selector": LABELS, "port": 8000}]},
                                 tmp_path, extra_args=("--kubeconfig", str(kubeconfig)))
        assert wait_for(lambda: json.loads(gateway.get("/healthz"))["endpoints"]["m"] == 1, 10)
        api.put_pod(pod("engine-1", LABELS, ip="10.0.0.2"))
        assert wait_for(lambda: json.loads(gateway.get("/healthz"))["endpoints"]["m"] == 2, 10)
    finally:
        if gateway is not None:
            gateway.stop()
        server.close()
