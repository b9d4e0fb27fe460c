"""The kv-cache renderer: a pool config the server and the connector load, memory sized from
the stack, the connector flags on exactly the models that use the pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .component_stacks import FULL, config_file, engine_args, full, objects, set_model, validation_problems


def test_pool_objects_validate_and_config_loads(tmp_path: Path) -> None:
    from runtime_components.kv.cli import load_pool_config

    objs = objects(FULL)
    assert {("StatefulSet", "aibrix-kv-cache"), ("Service", "aibrix-kv-cache"), ("PodDisruptionBudget", "aibrix-kv-cache"),
            ("NetworkPolicy", "aibrix-kv-cache"), ("ConfigMap", "aibrix-kv-cache")} <= set(objs)
    assert validation_problems(objs) == []
    pool = load_pool_config(config_file(objs, "aibrix-kv-cache", "pool.yaml", tmp_path))
    assert pool.server is not None and pool.client is not None
    assert (pool.server.capacity_bytes, pool.server.eviction.policy, pool.server.port) == (2 << 30, "lru", 9600)
    assert (pool.client.members.source, pool.client.members.dns_name) == ("dns", "aibrix-kv-cache.llm.svc")
    assert objs[("Service", "aibrix-kv-cache")]["spec"]["clusterIP"] == "None"
    assert objs[("StatefulSet", "aibrix-kv-cache")]["spec"]["replicas"] == 2


@pytest.mark.parametrize(("memory", "expected"), [("2Gi", "2560Mi"), ("64Gi", "66048Mi"), ("1500M", "1943Mi")])
def test_memory_request_is_capacity_plus_overhead(memory: str, expected: str) -> None:
    objs = objects(full(kvCache={"memoryPerReplica": memory}))
    resources = objs[("StatefulSet", "aibrix-kv-cache")]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == expected


def test_connector_flags_only_on_models_using_the_pool() -> None:
    from runtime_components.kv.connector_logic import client_config_from_extra

    objs = objects(FULL)
    for deployment in ("llama-3-8b-l20", "llama-3-8b-a10"):
        args = engine_args(objs, deployment)
        transfer = json.loads(args[args.index("--kv-transfer-config") + 1])
        assert (transfer["kv_connector"], transfer["kv_connector_module_path"], transfer["kv_role"]) == (
            "AIBrixKVConnector", "runtime_components.kv.vllm_connector", "kv_both")
        client = client_config_from_extra(transfer["kv_connector_extra_config"], environ={})
        assert (client.members.dns_name, client.members.port) == ("aibrix-kv-cache.llm.svc", 9600)
        assert args[args.index("--block-size") + 1] == "16"
    for deployment in ("qwen", "fixed"):
        assert "--kv-transfer-config" not in engine_args(objs, deployment)


def test_only_engines_reach_the_block_port() -> None:
    rules = objects(FULL)[("NetworkPolicy", "aibrix-kv-cache")]["spec"]["ingress"]
    assert rules[0] == {
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "engine", "app.kubernetes.io/instance": "demo"}}}],
        "ports": [{"protocol": "TCP", "port": 9600}],
    }
    assert rules[1]["ports"] == [{"protocol": "TCP", "port": 9601}]


def test_pool_off_emits_nothing_and_no_flags() -> None:
    data = set_model(full(kvCache={"enabled": False}), 0, kvCache={"enabled": False})
    objs = objects(data)
    assert not [k for k in objs if k[1] == "aibrix-kv-cache"]
    assert "--kv-transfer-config" not in engine_args(objs, "llama-3-8b-l20")


def test_engine_pods_get_the_connector_packages_from_the_init_container(tmp_path: Path) -> None:
    import subprocess
    import sys

    objs = objects(FULL)
    pod = objs[("Deployment", "llama-3-8b-l20")]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == "ghcr.io/aibrix-stack/kv-server:0.1.0"
    engine = pod["containers"][0]
    assert {"name": "PYTHONPATH", "value": "/opt/aibrix"} in engine["env"]
    assert {"name": "aibrix-packages", "mountPath": "/opt/aibrix", "readOnly": True} in engine["volumeMounts"]
    assert "initContainers" not in objs[("Deployment", "qwen")]["spec"]["template"]["spec"]
    # Run the init container's script here, then import the connector from the copy alone.
    target = tmp_path / "opt"
    target.mkdir()
    subprocess.run([sys.executable, *init["command"][1:]], env={"TARGET": str(target)}, check=True, timeout=60)
    probe = "import runtime_components.kv.vllm_connector as c, aibrix_spec; print(c.__file__); print(aibrix_spec.__file__)"
    done = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = [{str(target)!r}]; import site; site.main(); {probe}"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(line.startswith(str(target)) for line in done.stdout.splitlines())
