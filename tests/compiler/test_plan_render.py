"""plan decides (workloads, replica split, autoscaled counts, multi-node); core spells it out."""

from __future__ import annotations

from typing import Any

import pytest

from compiler.pipeline import resolve_stack
from compiler.plan import Plan, plan
from compiler.render import core

from .helpers import dump, minimal, with_model


def plan_of(data: dict[str, Any]) -> Plan:
    _doc, resolved = resolve_stack(dump(data), source_name="t.yaml")
    return plan(resolved, kube_version=(1, 37))


def objects(the_plan: Plan, kind: str) -> list[dict[str, Any]]:
    return [m.body for m in core.render(the_plan) if m.kind == kind]


POOLS = [
    {"name": "a", "accelerator": "nvidia-l4", "gpusPerNode": 4},
    {"name": "b", "accelerator": "nvidia-a10", "gpusPerNode": 4},
    {"name": "c", "accelerator": "nvidia-l20", "gpusPerNode": 8},
]


@pytest.mark.parametrize(
    "pools, replicas, expected",
    [
        (["a"], 3, {"small": 3}),
        (["a", "b"], 3, {"small-a": 2, "small-b": 1}),
        (["a", "b", "c"], 2, {"small-a": 1, "small-b": 1, "small-c": 0}),
        (["c", "a"], 5, {"small-c": 3, "small-a": 2}),
        (["a"], 0, {"small": 0}),
    ],
)
def test_fixed_replicas_split_over_pools(pools: list[str], replicas: int, expected: dict[str, int]) -> None:
    data = with_model(placement={"pools": pools}, replicas={"min": replicas})
    data["spec"]["gpuPools"] = POOLS
    the_plan = plan_of(data)
    assert {w.name: w.replicas for w in the_plan.models[0].workloads} == expected
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in objects(the_plan, "Deployment")} == expected


def test_autoscaled_deployment_omits_replicas() -> None:
    data = with_model(replicas={"min": 1, "max": 4}, autoscaling={"policy": "kpa"})
    the_plan = plan_of(data)
    assert the_plan.models[0].autoscaled and the_plan.models[0].workloads[0].replicas is None
    (deployment,) = objects(the_plan, "Deployment")
    assert "replicas" not in deployment["spec"]


def test_adapters_turn_on_lora_flags() -> None:
    data = with_model(adapters=[{"name": f"ad-{i}", "source": {"uri": "hf://o/a"}} for i in range(3)], lora={"maxRank": 64})
    (deployment,) = objects(plan_of(data), "Deployment")
    args = " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--enable-lora --max-loras 3 --max-lora-rank 64" in args


def test_multi_node_replica_is_left_to_kuberay() -> None:
    data = with_model(parallelism={"tensor": 4, "pipeline": 2})  # 8 GPUs > 4 per node of pool l4
    the_plan = plan_of(data)
    assert the_plan.models[0].workloads[0].multi_node
    assert objects(the_plan, "Deployment") == []


@pytest.mark.parametrize(
    "model, check",
    [
        ({"source": {"uri": "hf://o/m", "secretRef": "hf-token"}}, lambda c, p: c["envFrom"] == [{"secretRef": {"name": "hf-token"}}]),
        ({"parallelism": {"tensor": 2}}, lambda c, p: c["resources"]["limits"] == {"nvidia.com/gpu": 2}),
        ({"parallelism": {"tensor": 2}}, lambda c, p: p["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}),
        ({"engine": {"env": {"HF_HOME": "/cache"}}}, lambda c, p: c["env"] == [{"name": "HF_HOME", "value": "/cache"}, {"name": "HOME", "value": "/var/cache/engine-home"}]),
        ({"source": {"uri": "pvc://store/m"}}, lambda c, p: p["volumes"][-1]["persistentVolumeClaim"] == {"claimName": "store", "readOnly": True}),
        ({"engine": {"type": "sglang"}}, lambda c, p: c["command"] == ["python3", "-m", "sglang.launch_server"]),
        ({"engine": {"port": 9000}}, lambda c, p: c["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]),
        ({}, lambda c, p: {c[k]["httpGet"]["path"] for k in ("startupProbe", "readinessProbe", "livenessProbe")} == {"/health"}),
        ({}, lambda c, p: p["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}),
        ({}, lambda c, p: p["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
    ],
)
def test_deployment_details(model: dict[str, Any], check: Any) -> None:
    (deployment,) = objects(plan_of(with_model(**model)), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert check(pod["containers"][0], pod)


def test_service_selects_every_pool_and_pdb_one() -> None:
    data = with_model(placement={"pools": ["a", "b"]}, replicas={"min": 2})
    data["spec"]["gpuPools"] = POOLS
    the_plan = plan_of(data)
    (service,) = objects(the_plan, "Service")
    assert "aibrix.ai/gpu-pool" not in service["spec"]["selector"]
    pdbs = objects(the_plan, "PodDisruptionBudget")
    assert [p["spec"]["selector"]["matchLabels"]["aibrix.ai/gpu-pool"] for p in pdbs] == ["a", "b"]
    for deployment in objects(the_plan, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(labels[k] == v for k, v in deployment["spec"]["selector"]["matchLabels"].items())


def test_namespace_object_only_when_asked() -> None:
    assert objects(plan_of(minimal()), "Namespace") == []
    assert objects(plan_of(minimal(createNamespace=True)), "Namespace") == [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm"}}
    ]


@pytest.mark.parametrize(
    "written, option, expected",
    [("llm", None, "llm"), (None, "argo-ns", "argo-ns"), (None, None, "default"), ("llm", "llm", "llm")],
)
def test_namespace_resolution(written: str | None, option: str | None, expected: str) -> None:
    data = minimal()
    if written is None:
        del data["metadata"]["namespace"]
    else:
        data["metadata"]["namespace"] = written
    _doc, resolved = resolve_stack(dump(data), source_name="t", namespace=option)
    assert resolved.namespace == expected


def test_namespace_conflict_is_an_error() -> None:
    from compiler.errors import SpecReferenceError

    with pytest.raises(SpecReferenceError) as info:
        resolve_stack(dump(minimal()), source_name="t", namespace="other")
    (d,) = info.value.diagnostics
    assert d.message == 'the stack says namespace "llm" but --namespace says "other"' and d.line == 5


@pytest.mark.parametrize(
    "model, costs",
    [
        # fixed: 3 replicas split 2 (l4 at 0.70) + 1 (a10 at 0.75), 2 GPUs each
        ({"placement": {"pools": ["a", "b"]}, "parallelism": {"tensor": 2}, "replicas": {"min": 3}}, (4.3, 4.3)),
        # autoscaled: min on the cheapest pool, max on the dearest
        (
            {"placement": {"pools": ["a", "c"]}, "replicas": {"min": 1, "max": 4}, "autoscaling": {"policy": "kpa"}},
            (0.7, 4.4),
        ),
    ],
)
def test_explain_costs(model: dict[str, Any], costs: tuple[float, float]) -> None:
    from compiler.explain import model_costs

    data = with_model(**model)
    data["spec"]["gpuPools"] = POOLS
    assert model_costs(plan_of(data).models[0]) == pytest.approx(costs)


@pytest.mark.parametrize("runtime_class, expected", [("nvidia", "nvidia"), (None, None)])
def test_engine_pods_use_the_pools_runtime_class(runtime_class: str | None, expected: str | None) -> None:
    data = with_model()
    if runtime_class is not None:
        data["spec"]["gpuPools"][0]["runtimeClassName"] = runtime_class
    (deployment,) = objects(plan_of(data), "Deployment")
    assert deployment["spec"]["template"]["spec"].get("runtimeClassName") == expected
