"""The diagnostics family: one aibrix-diag DaemonSet + config per covered pool, RBAC only when needed."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from aibrix_spec.components.diag import DiagConfig

from .helpers import minimal
from .render_helpers import assert_valid, compiled, containers, env_of, of_kind

POOLS = [
    {"name": "l4", "accelerator": "nvidia-l4", "gpusPerNode": 4},
    {"name": "h100", "accelerator": "nvidia-h100", "gpusPerNode": 8, "runtimeClassName": "nvidia"},
]


def stack(diagnostics: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    data = minimal(**({"diagnostics": diagnostics} if diagnostics is not None else {}), **extra)
    data["spec"]["gpuPools"] = POOLS
    return data


@pytest.mark.parametrize(
    "section, daemon_sets, cluster_rbac",
    [
        (None, {}, False),
        ({"enabled": False}, {}, False),
        ({}, {"aibrix-diag-l4": 4, "aibrix-diag-h100": 8}, False),
        ({"pools": ["h100"]}, {"aibrix-diag-h100": 8}, False),
        ({"pools": ["l4"], "nodeCondition": True}, {"aibrix-diag-l4": 4}, True),
        ({"taintOnFailure": True}, {"aibrix-diag-l4": 4, "aibrix-diag-h100": 8}, True),
    ],
)
def test_pools_gpu_counts_and_rbac(section: dict[str, Any] | None, daemon_sets: dict[str, int], cluster_rbac: bool) -> None:
    objects = compiled(stack(section))
    configs = of_kind(objects, "ConfigMap")
    found = {
        name: DiagConfig.model_validate(yaml.safe_load(configs[name]["data"]["config.yaml"])).expected_gpu_count
        for name in of_kind(objects, "DaemonSet")
    }
    assert found == daemon_sets
    assert bool(of_kind(objects, "ClusterRole")) is cluster_rbac
    assert bool(of_kind(objects, "ClusterRoleBinding")) is cluster_rbac
    if daemon_sets:
        (account,) = [a for name, a in of_kind(objects, "ServiceAccount").items() if name == "aibrix-diag"]
        assert account["automountServiceAccountToken"] is cluster_rbac
        for ds in of_kind(objects, "DaemonSet").values():
            assert ds["spec"]["template"]["spec"]["automountServiceAccountToken"] is cluster_rbac
    assert_valid(objects)


def test_cluster_role_is_least_privilege_and_bound_to_the_daemon() -> None:
    objects = compiled(stack({"taintOnFailure": True}))
    (role,) = of_kind(objects, "ClusterRole").values()
    assert role["metadata"]["name"] == "aibrix-diag-llm-demo"  # cluster-scoped: namespace and stack in the name
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
    ]
    (binding,) = of_kind(objects, "ClusterRoleBinding").values()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aibrix-diag", "namespace": "llm"}]


def test_config_carries_interval_and_node_actions() -> None:
    objects = compiled(stack({"pools": ["l4"], "interval": "2m", "nodeCondition": True}))
    config = DiagConfig.model_validate(yaml.safe_load(of_kind(objects, "ConfigMap")["aibrix-diag-l4"]["data"]["config.yaml"]))
    assert (config.interval_seconds, config.metrics.port) == (120.0, 9402)
    assert (config.node.set_condition, config.node.taint_on_failure) == (True, False)


def test_daemon_pod_sees_gpus_without_requesting_them() -> None:
    objects = compiled(stack({}))
    ds = of_kind(objects, "DaemonSet")["aibrix-diag-h100"]
    pod = ds["spec"]["template"]["spec"]
    diag = containers(ds["spec"]["template"])["diag"]
    assert diag["command"] == ["aibrix-diag", "--periodic", "--config", "/etc/aibrix-diag/config.yaml"]
    env = env_of(diag)
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "nvidia.com/gpu" not in str(diag["resources"])
    assert diag["ports"] == [{"name": "metrics", "containerPort": 9402, "protocol": "TCP"}]
    assert pod["runtimeClassName"] == "nvidia"
    assert "runtimeClassName" not in of_kind(objects, "DaemonSet")["aibrix-diag-l4"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    # The pool's own toleration, then its own taint: a node it tainted keeps its daemon.
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "aibrix.ai/gpu-unhealthy", "operator": "Exists"},
    ]
    assert pod["volumes"] == [{"name": "config", "configMap": {"name": "aibrix-diag-h100"}}]
    assert "aibrix.ai/config-checksum" in ds["spec"]["template"]["metadata"]["annotations"]


def test_headless_service_selects_every_pool_daemon() -> None:
    objects = compiled(stack({}))
    service = of_kind(objects, "Service")["aibrix-diag"]
    assert service["spec"]["clusterIP"] == "None"
    for ds in of_kind(objects, "DaemonSet").values():
        pod_labels = ds["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
