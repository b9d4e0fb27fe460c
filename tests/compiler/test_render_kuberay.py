"""The kuberay family: a replica larger than one node becomes a RayCluster; only its head is served."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from compiler import SpecError

from .helpers import with_model
from .render_helpers import assert_valid, compiled, containers, env_of, of_kind


def ray_stack(gpus_per_node: int, tensor: int, pipeline: int, replicas: int = 1, **model: Any) -> dict[str, Any]:
    data = with_model(parallelism={"tensor": tensor, "pipeline": pipeline}, replicas={"min": replicas}, **model)
    data["spec"]["gpuPools"] = [{"name": "l4", "accelerator": "nvidia-l4", "gpusPerNode": gpus_per_node}]
    return data


@pytest.mark.parametrize(
    "per_node, tensor, pipeline, replicas, clusters, workers",
    [
        (4, 4, 2, 1, ["small-0"], 1),  # 8 GPUs on 4-GPU nodes: head + 1 worker
        (4, 4, 2, 2, ["small-0", "small-1"], 1),
        (8, 8, 4, 1, ["small-0"], 3),  # 32 GPUs: 4 nodes
        (4, 2, 3, 1, ["small-0"], 1),  # 6 GPUs round up to 2 nodes
        (4, 4, 2, 0, [], 0),
    ],
)
def test_clusters_and_groups_sized_from_parallelism(
    per_node: int, tensor: int, pipeline: int, replicas: int, clusters: list[str], workers: int
) -> None:
    objects = compiled(ray_stack(per_node, tensor, pipeline, replicas))
    found = of_kind(objects, "RayCluster")
    assert sorted(found) == clusters
    assert of_kind(objects, "Deployment") == {}
    for cluster in found.values():
        (group,) = cluster["spec"]["workerGroupSpecs"]
        assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (workers, workers, workers)
        for template in (cluster["spec"]["headGroupSpec"]["template"], group["template"]):
            (container,) = template["spec"]["containers"]
            assert container["resources"]["limits"] == {"nvidia.com/gpu": per_node}
        head = containers(cluster["spec"]["headGroupSpec"]["template"])["engine"]
        assert f"--expected-gpus {tensor * pipeline} " in head["args"][0]


def test_ray_clusters_validate_against_the_crd() -> None:
    assert_valid(compiled(ray_stack(8, 8, 4, 2)))


def test_head_starts_ray_then_the_launcher_then_vllm_on_ray() -> None:
    objects = compiled(ray_stack(4, 4, 2))
    cluster = of_kind(objects, "RayCluster")["small-0"]
    assert cluster["metadata"]["annotations"] == {"ray.io/overwrite-container-cmd": "true"}
    head = containers(cluster["spec"]["headGroupSpec"]["template"])["engine"]
    assert head["command"] == ["/bin/bash", "-lc", "--"]
    ray_part, launcher_part = head["args"][0].split(" && exec ")
    assert "ray start --head --port=6379" in ray_part and "--num-gpus=4" in ray_part
    words = shlex.split(launcher_part)
    assert words[: words.index("--")] == ["python3", "-m", "runtime_components.ray_launcher.cli", "--expected-gpus", "8", "--timeout", "900"]
    engine = words[words.index("--") + 1 :]
    assert engine[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert engine[-2:] == ["--distributed-executor-backend", "ray"]
    assert engine[engine.index("--tensor-parallel-size") + 1] == "4"
    assert engine[engine.index("--pipeline-parallel-size") + 1] == "2"
    worker = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert shlex.split(worker["args"][0].split("; exec ")[1])[:3] == ["ray", "start", "--address=small-0-head-svc:6379"]
    assert worker["args"][0].endswith("--block")


def test_only_the_head_is_discoverable() -> None:
    objects = compiled(ray_stack(4, 4, 2, 2))
    service = of_kind(objects, "Service")["small"]
    for cluster in of_kind(objects, "RayCluster").values():
        head = cluster["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
        worker = cluster["spec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= head.items()
        assert not service["spec"]["selector"].items() <= worker.items()
        assert head["model.aibrix.ai/name"] == "small" and "model.aibrix.ai/name" not in worker
        assert (head["aibrix.ai/ray-role"], worker["aibrix.ai/ray-role"]) == ("head", "worker")
    (pdb,) = of_kind(objects, "PodDisruptionBudget").values()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= head.items()


def test_every_pod_gets_shm_nccl_settings_and_the_weights() -> None:
    objects = compiled(ray_stack(4, 4, 2, source={"uri": "pvc://weights/llama", "secretRef": "hf"}, engine={"env": {"NCCL_DEBUG": "INFO"}}))
    cluster = of_kind(objects, "RayCluster")["small-0"]
    templates = [cluster["spec"]["headGroupSpec"]["template"], cluster["spec"]["workerGroupSpecs"][0]["template"]]
    for template in templates:
        pod = template["spec"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dshm"] == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}
        assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
        env = env_of(container)
        assert (env["NCCL_SOCKET_IFNAME"], env["GLOO_SOCKET_IFNAME"], env["NCCL_DEBUG"]) == ("eth0", "eth0", "INFO")
        assert env["VLLM_HOST_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert container["envFrom"] == [{"secretRef": {"name": "hf"}}]
        assert "hostNetwork" not in pod


@pytest.mark.parametrize(
    "model, path, message",
    [
        (
            {"replicas": {"min": 1, "max": 2}, "autoscaling": {"policy": "kpa"}},
            ("spec", "models", 0, "autoscaling", "policy"),
            "autoscaling of multi-node models is not supported yet; set autoscaling.policy: none or fit the model on one node",
        ),
        (
            {"engine": {"type": "sglang"}},
            ("spec", "models", 0, "engine", "type"),
            "multi-node models run on vLLM's Ray executor; engine sglang is not supported there",
        ),
    ],
)
def test_unsupported_multi_node_settings_are_spec_errors(model: dict[str, Any], path: tuple[Any, ...], message: str) -> None:
    data = ray_stack(4, 4, 2)
    data["spec"]["models"][0].update(model)
    with pytest.raises(SpecError) as info:
        compiled(data)
    (d,) = info.value.diagnostics
    assert (d.path, d.message) == (path, message)
    assert d.line > 0 and "spans 2 nodes" in d.expected


def test_single_node_models_do_not_use_ray() -> None:
    objects = compiled(ray_stack(8, 4, 2))
    assert of_kind(objects, "RayCluster") == {} and list(of_kind(objects, "Deployment")) == ["small"]


def test_a_name_too_long_for_the_head_service_is_a_spec_error() -> None:
    data = ray_stack(4, 4, 2)
    data["spec"]["models"][0]["name"] = "m" * 53  # "<53>-0-head-svc" is 64 characters
    with pytest.raises(SpecError) as info:
        compiled(data)
    (d,) = info.value.diagnostics
    assert d.path == ("spec", "models", 0, "name") and d.line > 0
    assert d.message == f'RayCluster "{"m" * 53}-0" is too long: its head Service "{"m" * 53}-0-head-svc" exceeds 63 characters'
    data["spec"]["models"][0]["name"] = "m" * 52
    assert "m" * 52 + "-0" in of_kind(compiled(data), "RayCluster")
