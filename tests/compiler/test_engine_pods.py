"""One engine pod builder: every engine pod (Deployment pods, RayCluster heads and workers)
gets every engine feature, and the target Kubernetes version gates what it supports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from compiler.manifest import pod_templates
from compiler.pipeline import compile_manifests

from .helpers import dump, minimal
from .render_helpers import assert_valid, env_of

ADAPTERS = [{"name": "sql", "source": {"uri": "hf://org/sql-lora"}}]


def _stack(*, multi_node: bool, kv: bool = False, adapters: bool = False) -> dict[str, Any]:
    model: dict[str, Any] = {
        "name": "big" if multi_node else "small",
        "source": {"uri": "hf://org/model"},
        "placement": {"pools": ["l4"]},
        "replicas": {"min": 2},
    }
    if multi_node:
        model["parallelism"] = {"tensor": 4, "pipeline": 2}  # 8 GPUs on 4-GPU nodes: a head and a worker
    if kv:
        model["kvCache"] = {"enabled": True}
    if adapters:
        model["adapters"] = ADAPTERS
    spec: dict[str, Any] = {"models": [model]}
    if kv:
        spec["kvCache"] = {"replicas": 1, "memoryPerReplica": "1Gi"}
    return minimal(**spec)


def _engine_pods(data: dict[str, Any], kube_version: str = "1.37") -> Iterator[tuple[str, dict[str, Any]]]:
    """(role label, pod template) of every engine pod the stack compiles to."""
    _plan, manifests = compile_manifests(dump(data), source_name="t.yaml", kube_version=kube_version)
    for m in manifests:
        if m.component != "engine" or m.kind not in ("Deployment", "RayCluster"):
            continue
        for template in pod_templates(m.body):
            yield template["metadata"]["labels"].get("aibrix.ai/ray-role", "server"), template


def _objects(data: dict[str, Any], kube_version: str = "1.37") -> list[dict[str, Any]]:
    _plan, manifests = compile_manifests(dump(data), source_name="t.yaml", kube_version=kube_version)
    return [m.body for m in manifests]


@pytest.mark.parametrize("multi_node", [False, True], ids=["deployment", "raycluster"])
def test_every_engine_pod_loads_the_kv_connector(multi_node: bool) -> None:
    pods = list(_engine_pods(_stack(multi_node=multi_node, kv=True)))
    assert {role for role, _ in pods} == ({"head", "worker"} if multi_node else {"server"})
    for role, pod in pods:
        spec = pod["spec"]
        assert [c["name"] for c in spec["initContainers"]] == ["aibrix-packages"], role
        engine = spec["containers"][0]
        assert env_of(engine)["PYTHONPATH"] == "/opt/aibrix", role
        assert {"name": "aibrix-packages", "mountPath": "/opt/aibrix", "readOnly": True} in engine["volumeMounts"], role
        assert {"name": "aibrix-packages", "emptyDir": {"sizeLimit": "256Mi"}} in spec["volumes"], role
    assert_valid(_objects(_stack(multi_node=multi_node, kv=True)))


def test_ray_head_runs_the_engine_with_the_connector_flags() -> None:
    head = next(pod for role, pod in _engine_pods(_stack(multi_node=True, kv=True)) if role == "head")
    script = head["spec"]["containers"][0]["args"][0]
    assert "--kv-transfer-config" in script and "AIBrixKVConnector" in script


def test_multi_node_adapters_put_the_sidecar_on_serving_heads_only() -> None:
    pods = dict(_engine_pods(_stack(multi_node=True, adapters=True)))
    head, worker = pods["head"]["spec"], pods["worker"]["spec"]
    assert [c["name"] for c in head["initContainers"]] == ["sidecar", "aibrix-packages"]
    assert head["initContainers"][0]["restartPolicy"] == "Always"
    assert env_of(head["containers"][0])["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "initContainers" not in worker and [c["name"] for c in worker["containers"]] == ["ray-worker"]
    assert "--enable-lora" in head["containers"][0]["args"][0]
    assert_valid(_objects(_stack(multi_node=True, adapters=True)))


@pytest.mark.parametrize(
    ("version", "native"),
    [("1.25", False), ("1.28", False), ("1.29", True), ("1.37", True)],
)
def test_lora_sidecar_is_native_from_1_29(version: str, native: bool) -> None:
    ((_role, pod),) = list(_engine_pods(_stack(multi_node=False, adapters=True), kube_version=version))
    spec = pod["spec"]
    if native:
        (sidecar,) = spec["initContainers"]
        assert sidecar["name"] == "sidecar" and sidecar["restartPolicy"] == "Always"
        assert [c["name"] for c in spec["containers"]] == ["engine"]
    else:
        assert "initContainers" not in spec
        assert [c["name"] for c in spec["containers"]] == ["engine", "sidecar"]
        assert "restartPolicy" not in spec["containers"][1]


@pytest.mark.parametrize(("version", "policy"), [("1.25", None), ("1.26", None), ("1.27", "AlwaysAllow"), ("1.37", "AlwaysAllow")])
@pytest.mark.parametrize("multi_node", [False, True], ids=["deployment", "raycluster"])
def test_engine_budgets_let_unready_pods_go_from_1_27(version: str, policy: str | None, multi_node: bool) -> None:
    objects = _objects(_stack(multi_node=multi_node), kube_version=version)
    (budget,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert budget["spec"].get("unhealthyPodEvictionPolicy") == policy


def test_component_budgets_keep_the_default_policy() -> None:
    objects = _objects(minimal(gateway={}))
    budgets = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert budgets["small"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert "unhealthyPodEvictionPolicy" not in budgets["aibrix-gateway"]


def test_ray_heads_get_the_launcher_from_our_packages() -> None:
    """The vLLM image has no aibrix-ray-launcher: heads run it from the copied packages."""
    pods = dict(_engine_pods(_stack(multi_node=True)))
    head, worker = pods["head"]["spec"], pods["worker"]["spec"]
    (init,) = head["initContainers"]
    assert init["name"] == "aibrix-packages" and init["image"] == "ghcr.io/aibrix-stack/downloader:0.1.0"
    assert env_of(head["containers"][0])["PYTHONPATH"] == "/opt/aibrix"
    assert "exec python3 -m runtime_components.ray_launcher.cli --expected-gpus 8" in head["containers"][0]["args"][0]
    assert "initContainers" not in worker
