"""The autoscaling renderer: HPA / KEDA / scaler per policy, bounds per workload, a scaler
config the scaler loads, and RBAC limited to the stack's own workloads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from aibrix_spec.components.scaler import ScalerConfig

from .component_stacks import FULL, config_file, full, objects, set_model, validation_problems

ONE_POOL = set_model(full(optimizer={"enabled": False}, kvCache={"enabled": False}), 0,
                     placement={"pools": ["l20"]}, kvCache={"enabled": False},
                     autoscaling={"policy": "hpa", "metric": "kv_cache_usage", "target": 0.7})

POLICIES = [
    ("hpa", {"policy": "hpa", "metric": "kv_cache_usage", "target": 0.7}, "HorizontalPodAutoscaler"),
    ("hpa+keda", {"policy": "hpa", "metric": "kv_cache_usage", "target": 0.7, "useKeda": True}, "ScaledObject"),
    ("kpa", {"policy": "kpa", "metric": "num_requests_waiting", "target": 4}, "Deployment"),
    ("apa", {"policy": "apa", "metric": "num_requests_running", "target": 8}, "Deployment"),
]


@pytest.mark.parametrize(("policy", "autoscaling", "kind"), POLICIES, ids=[p[0] for p in POLICIES])
def test_each_policy_emits_its_object_and_omits_replicas(policy: str, autoscaling: dict[str, Any], kind: str) -> None:
    data = set_model(ONE_POOL, 0, autoscaling=autoscaling)
    data = set_model(data, 1, autoscaling={"policy": "none"}, replicas={"min": 1})
    objs = objects(data)
    name = "aibrix-scaler" if kind == "Deployment" else "llama-3-8b"
    assert (kind, name) in objs
    assert "replicas" not in objs[("Deployment", "llama-3-8b")]["spec"]
    assert (("Deployment", "aibrix-scaler") in objs) == (kind == "Deployment")
    assert validation_problems(objs) == []


def test_hpa_uses_a_pods_metric_per_model() -> None:
    hpa = objects(ONE_POOL)[("HorizontalPodAutoscaler", "llama-3-8b")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert hpa["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "vllm:kv_cache_usage_perc", "selector": {"matchLabels": {"model_name": "llama-3-8b"}}},
        "target": {"type": "AverageValue", "averageValue": "700m"}}}]


def test_keda_queries_prometheus_for_the_workload_pods() -> None:
    data = set_model(ONE_POOL, 0, autoscaling={"policy": "hpa", "metric": "num_requests_running", "target": 12, "useKeda": True})
    trigger = objects(data)[("ScaledObject", "llama-3-8b")]["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == (
        'sum(vllm:num_requests_running{namespace="llm",model_name="llama-3-8b",pod=~"llama-3-8b-[a-z0-9]+-[a-z0-9]+"})')
    assert trigger["metadata"]["threshold"] == "12"


@pytest.mark.parametrize(
    ("prometheus_url", "expected"),
    [(None, "http://prometheus-operated.monitoring.svc:9090"), ("https://prom.obs.svc:9443/api", "https://prom.obs.svc:9443/api")],
)
def test_keda_server_is_the_stacks_prometheus_url(prometheus_url: str | None, expected: str) -> None:
    data = set_model(ONE_POOL, 0, autoscaling={"policy": "hpa", "metric": "num_requests_running", "target": 12, "useKeda": True})
    if prometheus_url is not None:
        data["spec"]["prometheusUrl"] = prometheus_url
    trigger = objects(data)[("ScaledObject", "llama-3-8b")]["spec"]["triggers"][0]
    assert trigger["metadata"]["serverAddress"] == expected


def test_keda_concurrency_sums_running_and_waiting() -> None:
    data = set_model(ONE_POOL, 0, autoscaling={"policy": "hpa", "metric": "concurrency", "target": 10, "useKeda": True})
    query = objects(data)[("ScaledObject", "llama-3-8b")]["spec"]["triggers"][0]["metadata"]["query"]
    match = 'namespace="llm",model_name="llama-3-8b",pod=~"llama-3-8b-[a-z0-9]+-[a-z0-9]+"'
    assert query == f"sum(vllm:num_requests_running{{{match}}}) + sum(vllm:num_requests_waiting{{{match}}})"


@pytest.mark.parametrize("policy", ["kpa", "apa"])
def test_scaler_concurrency_is_running_plus_waiting(policy: str, tmp_path: Path) -> None:
    from runtime_components.scaler.config import load_config

    data = set_model(ONE_POOL, 0, autoscaling={"policy": policy, "metric": "concurrency", "target": 10})
    config = load_config(config_file(objects(data), "aibrix-scaler", "scaler.yaml", tmp_path))
    metric = {t.name: t for t in config.targets}["llama-3-8b"].metric
    assert metric.names == ("vllm:num_requests_running", "vllm:num_requests_waiting")
    assert (metric.source, metric.aggregation) == ("engine", "per-pod")


def test_scaler_config_is_what_the_scaler_loads(tmp_path: Path) -> None:
    from runtime_components.scaler.config import load_config

    objs = objects(FULL)
    config = load_config(config_file(objs, "aibrix-scaler", "scaler.yaml", tmp_path))
    by_name = {t.name: t for t in config.targets}
    assert sorted(by_name) == ["llama-3-8b-a10", "llama-3-8b-l20", "qwen"]
    l20 = by_name["llama-3-8b-l20"]
    assert (l20.metric.source, l20.metric.aggregation, l20.policy) == ("optimizer", "total", "apa")
    assert l20.metric.optimizer is not None
    assert l20.metric.optimizer.url == "http://aibrix-optimizer.llm.svc:8080/metrics"
    assert l20.metric.optimizer.labels == {"model": "llama-3-8b", "pool": "l20"}
    qwen = by_name["qwen"]
    assert (qwen.metric.name, qwen.metric.engine_source.port, qwen.target) == ("vllm:num_requests_running", 8001, 16)
    assert qwen.pod_selector["model.aibrix.ai/name"] == "qwen"
    assert config.leader_election.enabled and config.leader_election.namespace == "llm"


# (policy, metric, replicas min/max, pools) -> per-pool (min, max)
BOUNDS = [
    ("apa", "num_requests_running", (3, 9), ["l20", "a10"], {"llama-3-8b-l20": (2, 5), "llama-3-8b-a10": (1, 4)}),
    ("apa", "optimizer_desired_replicas", (3, 9), ["l20", "a10"], {"llama-3-8b-l20": (2, 9), "llama-3-8b-a10": (1, 9)}),
    ("apa", "num_requests_running", (1, 4), ["l20", "a10"], {"llama-3-8b-l20": (1, 2), "llama-3-8b-a10": (1, 2)}),
    ("kpa", "num_requests_running", (0, 4), ["l20"], {"llama-3-8b": (0, 4)}),
]


@pytest.mark.parametrize(("policy", "metric", "replicas", "pools", "expected"), BOUNDS)
def test_bounds_per_workload(policy: str, metric: str, replicas: tuple[int, int], pools: list[str], expected: dict[str, tuple[int, int]]) -> None:
    base = FULL if metric == "optimizer_desired_replicas" else full(optimizer={"enabled": False})
    if replicas[0] == 0:  # scale from zero needs the gateway's flow control
        base = copy.deepcopy(base)
        base["spec"]["gateway"]["flowControl"] = {"enabled": True}
    data = set_model(base, 0, placement={"pools": pools}, replicas={"min": replicas[0], "max": replicas[1]},
                     autoscaling={"policy": policy, "metric": metric, "target": 1})
    text = objects(data)[("ConfigMap", "aibrix-scaler")]["data"]["scaler.yaml"]
    config = ScalerConfig.model_validate(yaml.safe_load(text))
    got = {t.name: (t.min_replicas, t.max_replicas) for t in config.targets if t.name.startswith("llama")}
    assert got == expected
    if replicas[0] == 0:  # the gateway's held + in-flight requests wake it
        demands = [t.demand for t in config.targets if t.name.startswith("llama")]
        assert all(d is not None and d.model == "llama-3-8b" and d.urls for d in demands)


def test_scaler_rbac_names_exactly_the_autoscaled_workloads() -> None:
    rules = objects(FULL)[("Role", "aibrix-scaler")]["rules"]
    scale = next(r for r in rules if r["resources"] == ["deployments/scale"])
    assert scale["resourceNames"] == ["llama-3-8b-a10", "llama-3-8b-l20", "qwen"]
    assert scale["verbs"] == ["get", "patch"]
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]} in rules
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["aibrix-scaler"], "verbs": ["get", "update"]} in rules
    verbs = sorted(v for r in rules for v in r["verbs"])
    assert "delete" not in verbs and "*" not in verbs


def test_fixed_models_get_no_autoscaler() -> None:
    objs = objects(FULL)
    assert objs[("Deployment", "fixed")]["spec"]["replicas"] == 2
    assert not [k for k in objs if k[0] in ("HorizontalPodAutoscaler", "ScaledObject") and k[1] == "fixed"]


def test_hpa_on_the_optimizer_gauge_is_an_external_metric_per_pool() -> None:
    data = set_model(FULL, 0, autoscaling={"policy": "hpa", "metric": "optimizer_desired_replicas", "target": 1})
    objs = objects(data)
    assert validation_problems(objs) == []
    for pool in ("l20", "a10"):
        (metric,) = objs[("HorizontalPodAutoscaler", f"llama-3-8b-{pool}")]["spec"]["metrics"]
        assert metric == {"type": "External", "external": {
            "metric": {"name": "aibrix_optimizer_desired_replicas", "selector": {"matchLabels": {"model": "llama-3-8b", "pool": pool}}},
            "target": {"type": "AverageValue", "averageValue": "1"}}}


@pytest.mark.parametrize(("policy", "flow_control", "reads_held"), [
    ("kpa", True, True), ("apa", True, True), ("kpa", False, False), ("hpa", True, False),
])  # fmt: skip
def test_under_flow_control_our_scaler_reads_the_held_requests_at_any_size(
    policy: str, flow_control: bool, reads_held: bool
) -> None:
    """The engines' queues are capped under flow control; the rest waits at the gateway, so a
    busy model's demand is only visible there. No zero gate: minReplicas stays 1."""
    data = copy.deepcopy(full(optimizer={"enabled": False}))
    data["spec"]["gateway"]["flowControl"] = {"enabled": flow_control}
    data = set_model(data, 0, placement={"pools": ["l20"]}, replicas={"min": 1, "max": 4},
                     autoscaling={"policy": policy, "metric": "num_requests_running", "target": 4})
    objs = objects(data)
    if policy == "hpa":
        assert ("ConfigMap", "aibrix-scaler") not in objs or "llama-3-8b" not in objs[("ConfigMap", "aibrix-scaler")]["data"]["scaler.yaml"]
        return
    raw = yaml.safe_load(objs[("ConfigMap", "aibrix-scaler")]["data"]["scaler.yaml"])
    target = next(t for t in raw["targets"] if t["name"].startswith("llama"))
    assert target["minReplicas"] == 1
    if reads_held:
        assert target["demand"]["model"] == "llama-3-8b" and target["demand"]["urls"]
        assert "scaleToZeroGraceSeconds" not in target["demand"]
    else:
        assert "demand" not in target
