"""What runs locally is the compiled configuration, with only loopback-specific fields rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from compiler.pipeline import compile_stack
from local_stack.localize import (
    DEV_API_KEY,
    LocalInputError,
    envoy_config,
    gateway_config,
    kv_pool_config,
    localize,
    optimizer_config,
    users_file,
)

from .harness import EXAMPLES, REPO


def _compiled(name: str, path: str) -> dict:
    files = compile_stack((REPO / "examples" / "stacks" / f"{name}.yaml").read_text(), source_name=name)
    return yaml.safe_load(next(iter(yaml.safe_load(files[path])["data"].values())))


def _stack(name: str):
    return localize((REPO / "examples" / "stacks" / f"{name}.yaml").read_text(), source_name=f"{name}.yaml")


@pytest.mark.parametrize(("name", "model"), [("pd", "llama-3-8b"), ("pd-hetero", "llama-3-70b")])
def test_a_disaggregated_stack_runs_its_roles_on_simulated_engines(name: str, model: str) -> None:
    local = _stack(name)
    assert {g.pd_role for g in local.engines} == {"prefill", "decode"}
    with pytest.raises(LocalInputError, match="disaggregated .*simulated engines only"):
        localize((REPO / "examples" / "stacks" / f"{name}.yaml").read_text(), source_name=f"{name}.yaml",
                 model_dirs={model: "/nonexistent"})


@pytest.mark.parametrize("stack", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_no_cluster_address_is_left_in_any_local_config(stack: Path) -> None:
    local = localize(stack.read_text(), source_name=stack.name)
    configs = [gateway_config(local, endpoints_file="/x/endpoints.json", users_file=None, redis_url=None,
                              routes_file="/x/routes.yaml" if local.routes is not None else None),
               envoy_config(local, grpc_port=5000, listener_port=5001, admin_port=5002)]
    if local.kv_pool is not None:
        configs.append(kv_pool_config(local))
    if local.optimizer is not None:
        configs.append(optimizer_config(local, gateway_metrics_url="http://127.0.0.1:5003/metrics"))
    text = json.dumps(configs)
    assert ".svc" not in text and "0.0.0.0" not in text and "/etc/aibrix" not in text


def test_the_gateway_runs_its_compiled_config_with_static_discovery() -> None:
    local = _stack("gateway-standalone")
    compiled = _compiled("gateway-standalone", "gateway/configmap-aibrix-gateway.yaml")
    config = gateway_config(local, endpoints_file="/run/endpoints.json", users_file="/run/users.yaml",
                            redis_url="redis://127.0.0.1:7000/0")
    assert config["discovery"] == {"mode": "static", "endpointsFile": "/run/endpoints.json", "pollIntervalS": 0.2}
    assert config["listen"] == {"host": "127.0.0.1", "grpcPort": 0, "httpPort": 0}
    assert config["rateLimits"] == {**compiled["rateLimits"], "usersFile": "/run/users.yaml",
                                    "redisUrl": "redis://127.0.0.1:7000/0"}
    assert [{k: v for k, v in m.items() if k != "selector"} for m in compiled["models"]] == config["models"]
    assert config["fallbacks"] == compiled["fallbacks"]
    assert users_file(local) == {"users": [{"name": "local-dev", "apiKey": DEV_API_KEY, "tier": "team"}]}
    without_redis = gateway_config(local, endpoints_file="e", users_file=None, redis_url=None)["rateLimits"]
    assert "redisUrl" not in without_redis and "usersFile" not in without_redis


def test_envoy_runs_the_compiled_bootstrap_with_loopback_addresses() -> None:
    local = _stack("gateway-standalone")
    compiled = _compiled("gateway-standalone", "gateway/configmap-aibrix-envoy.yaml")
    config = envoy_config(local, grpc_port=5000, listener_port=5001, admin_port=5002)
    assert config["static_resources"]["listeners"][0]["filter_chains"] == compiled["static_resources"]["listeners"][0]["filter_chains"]
    engines = config["static_resources"]["clusters"][0]
    assert engines == compiled["static_resources"]["clusters"][0]  # ORIGINAL_DST: untouched
    gateway = config["static_resources"]["clusters"][1]
    assert gateway["type"] == "STATIC"
    assert gateway["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "127.0.0.1", "port_value": 5000}}


def test_envoy_gateway_mode_builds_the_standalone_bootstrap_from_the_plan() -> None:
    local = _stack("production")
    assert local.envoy is None
    assert any("envoy-gateway" in note for note in local.notes)
    config = envoy_config(local, grpc_port=5000, listener_port=5001, admin_port=5002)
    route = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    retry = route["virtual_hosts"][0]["routes"][0]["route"]["retry_policy"]
    assert retry["num_retries"] == local.plan.gateway.num_retries


def test_a_stack_without_a_gateway_gets_the_compilers_default_front_door() -> None:
    local = _stack("quickstart")
    assert local.envoy is not None
    assert [m["name"] for m in local.gateway["models"]] == ["Qwen/Qwen2.5-0.5B-Instruct"]
    assert any("no gateway" in note for note in local.notes)


def test_multinode_models_run_one_simulated_engine_per_replica() -> None:
    local = _stack("multinode-2node")
    (group,) = local.engines
    assert group.multi_node and group.replicas == 2 and group.tensor_parallel == 8
    assert any("one simulated engine stands in for each replica" in note for note in local.notes)


def test_the_optimizer_reads_the_local_gateway_and_derives_its_profiles() -> None:
    local = _stack("production")
    config = optimizer_config(local, gateway_metrics_url="http://127.0.0.1:9/metrics")
    assert config["workload"]["gatewayMetricsUrls"] == ["http://127.0.0.1:9/metrics"]
    assert "profilesDir" not in config and config["deriveMissingProfiles"] is True
    assert config["models"] == local.optimizer["models"]


def test_the_scaler_runs_its_compiled_targets_against_the_local_optimizer() -> None:
    from local_stack.localize import scaler_config

    local = _stack("gateway-standalone")
    compiled = _compiled("gateway-standalone", "autoscaler/configmap-aibrix-scaler.yaml")
    assert {g.name for g in local.engines if g.scaled} == {t["scaleTargetRef"]["name"] for t in compiled["targets"]}
    config = scaler_config(local, optimizer_url="http://127.0.0.1:9/metrics")
    assert [t["name"] for t in config["targets"]] == [t["name"] for t in compiled["targets"]]
    for target, original in zip(config["targets"], compiled["targets"]):
        assert target["maxReplicas"] == min(original["maxReplicas"], 4)
        assert target["policy"] == original["policy"] and target["metric"]["name"] == original["metric"]["name"]
        if original["metric"]["source"] == "optimizer":
            assert target["metric"]["optimizer"]["url"] == "http://127.0.0.1:9/metrics"
    assert config["leaderElection"] == compiled["leaderElection"]
