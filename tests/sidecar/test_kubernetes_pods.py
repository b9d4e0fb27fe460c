"""The sidecar's Kubernetes pod source, through the official client, against the fake API."""

from __future__ import annotations

from kubernetes import client

from runtime_components.common.fake_kube import FakeKubeApi, ThreadedServer, pod_object
from runtime_components.sidecar.pods import KubernetesPods

LABELS = {"model.aibrix.ai/name": "llama"}


def test_lists_ready_pods_of_the_model_only() -> None:
    fake = FakeKubeApi()
    fake.put_pod(pod_object("b-ready", LABELS, namespace="llm", ip="10.0.0.2"))
    fake.put_pod(pod_object("a-ready", LABELS, namespace="llm", ip="10.0.0.1"))
    fake.put_pod(pod_object("starting", LABELS, namespace="llm", ip=None, ready=False))
    fake.put_pod(pod_object("unready", LABELS, namespace="llm", ip="10.0.0.3", phase="Running", ready=False))
    fake.put_pod(pod_object("leaving", LABELS, namespace="llm", ip="10.0.0.4", terminating=True))
    fake.put_pod(pod_object("other-model", {"model.aibrix.ai/name": "x"}, namespace="llm", ip="10.0.0.5"))
    fake.put_pod(pod_object("other-ns", LABELS, namespace="prod", ip="10.0.0.6"))
    with ThreadedServer(fake.app()) as server:
        api = client.ApiClient(client.Configuration(host=server.url))
        try:
            pods = KubernetesPods("llm", "model.aibrix.ai/name=llama", api=client.CoreV1Api(api))
            assert pods.ready_pods() == ["a-ready", "b-ready"]
            fake.delete_pod("llm", "a-ready")
            assert pods.ready_pods() == ["b-ready"]
        finally:
            api.close()
    (request,) = {(r.method, r.path, r.query["labelSelector"]) for r in fake.requests}
    assert request == ("GET", "/api/v1/namespaces/llm/pods", "model.aibrix.ai/name=llama")
