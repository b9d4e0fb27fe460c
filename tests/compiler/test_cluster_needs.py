"""What compiled manifests need from a cluster (compiler/cluster_needs.py), on the examples."""

from __future__ import annotations

import pytest

from compiler.cluster_needs import ClusterNeeds, GpuWorkload, cluster_needs, plural
from compiler.pipeline import compile_manifests

from .helpers import EXAMPLES


def needs(example: str) -> ClusterNeeds:
    path = EXAMPLES / f"{example}.yaml"
    _plan, manifests = compile_manifests(path.read_text(), source_name=path.name)
    return cluster_needs(manifests)


@pytest.mark.parametrize(
    ("kind", "resource"),
    [("RayCluster", "rayclusters"), ("BackendTrafficPolicy", "backendtrafficpolicies"), ("Gateway", "gateways"),
     ("HTTPRoute", "httproutes"), ("InferencePool", "inferencepools"), ("Ingress", "ingresses"), ("Gateway", "gateways")],
)
def test_plural_follows_kubernetes(kind: str, resource: str) -> None:
    assert plural(kind) == resource


def test_a_multinode_replica_needs_its_head_and_workers() -> None:
    got = needs("multinode-2node").gpu_workloads
    selector = (("nvidia.com/gpu.product", "NVIDIA-L20"),)
    assert got == (
        GpuWorkload("llm", "RayCluster", "llama-3-70b-0", "nvidia.com/gpu", 4, 2, selector),
        GpuWorkload("llm", "RayCluster", "llama-3-70b-1", "nvidia.com/gpu", 4, 2, selector),
    )
    assert [r.crd_name for r in needs("multinode-2node").custom_resources] == ["rayclusters.ray.io"]


def test_autoscaled_deployments_count_their_minimum_replicas() -> None:
    # Deployments without replicas take the floor of whoever scales them: the aibrix-scaler
    # config (apa, kpa) or the ScaledObject (KEDA).
    by_name = {g.name: g.pods for g in needs("production").gpu_workloads}
    assert by_name == {"llama-3-70b": 1, "llama-3-8b-h100": 1, "llama-3-8b-l20": 1, "qwen2-5-7b": 1}
    assert {g.name: g.pods for g in needs("heterogeneous").gpu_workloads}["llama-3-70b"] == 2


def test_secrets_come_from_env_volumes_and_pull_secrets() -> None:
    assert {(s.name, s.used_by) for s in needs("private-weights").secrets} == {
        ("registry-credentials", "Deployment/deepseek-coder"), ("registry-credentials", "Deployment/qwen2-5-7b"),
    }
    production = {s.name for s in needs("production").secrets}
    assert production == {"api-keys", "hf-token", "redis-auth"}  # users file, HF token, Redis password item


def test_namespaces_runtime_and_gateway_classes() -> None:
    quickstart = needs("quickstart")
    assert (quickstart.namespaces, quickstart.created_namespaces, quickstart.stack_name) == (("llm",), ("llm",), "quickstart")
    assert needs("multinode-4node").runtime_classes == ("nvidia",)
    assert needs("production").gateway_classes == ("eg",)
    assert needs("gateway-standalone").custom_resources == ()
