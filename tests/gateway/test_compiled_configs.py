"""The compiler's output, loaded by the real components: every golden gateway ConfigMap must
parse as a GatewayConfig, and every golden Envoy bootstrap must pass ``envoy --mode validate``."""

import subprocess
from pathlib import Path

import pytest
import yaml

from runtime_components.gateway.config_file import parse_config

from .harness import envoy_binary

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GATEWAY_MAPS = sorted(GOLDEN.glob("*/expected/gateway/configmap-aibrix-gateway.yaml"))
ENVOY_MAPS = sorted(GOLDEN.glob("*/expected/gateway/configmap-aibrix-envoy.yaml"))


def _data(path: Path, key: str) -> str:
    return yaml.safe_load(path.read_text())["data"][key]


@pytest.mark.skipif(not GATEWAY_MAPS, reason="no compiled gateway ConfigMap in tests/golden yet")
@pytest.mark.parametrize("path", GATEWAY_MAPS, ids=lambda p: p.parts[-4])
def test_compiled_gateway_config_loads(path):
    config = parse_config(_data(path, "gateway.yaml"), str(path.relative_to(GOLDEN)))
    assert config.models and all(m.selector for m in config.models)


@pytest.mark.skipif(not ENVOY_MAPS or envoy_binary() is None, reason="no compiled Envoy ConfigMap or no envoy binary")
@pytest.mark.parametrize("path", ENVOY_MAPS, ids=lambda p: p.parts[-4])
def test_compiled_envoy_bootstrap_validates(path, tmp_path):
    config = tmp_path / "envoy.yaml"
    config.write_text(_data(path, "envoy.yaml"))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


STANDALONE = GOLDEN.parents[1] / "examples" / "stacks" / "gateway-standalone.yaml"


def test_one_body_limit_sets_envoys_buffer_and_the_gateways_limit():
    from compiler.pipeline import compile_stack

    text = STANDALONE.read_text().replace("    mode: standalone\n", "    mode: standalone\n    maxRequestBodyBytes: 16Mi\n", 1)
    files = compile_stack(text, source_name="stack.yaml")
    envoy = yaml.safe_load(yaml.safe_load(files["gateway/configmap-aibrix-envoy.yaml"])["data"]["envoy.yaml"])
    gateway = parse_config(yaml.safe_load(files["gateway/configmap-aibrix-gateway.yaml"])["data"]["gateway.yaml"], "gw")
    listener = envoy["static_resources"]["listeners"][0]
    assert listener["per_connection_buffer_limit_bytes"] == gateway.max_request_body_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize("value", ["2Gi", "1Ki", "999999999Ei"])
def test_body_limit_out_of_range_is_a_spec_error(value):
    from compiler.errors import SpecError
    from compiler.pipeline import compile_stack

    text = STANDALONE.read_text().replace("    mode: standalone\n", f"    mode: standalone\n    maxRequestBodyBytes: {value}\n", 1)
    with pytest.raises(SpecError) as err:
        compile_stack(text, source_name="stack.yaml")
    assert "maxRequestBodyBytes" in str(err.value)


def test_an_sglang_model_is_scraped_and_scaled_in_sglangs_dialect():
    """The compiler writes each model's engine into the gateway's and the scaler's configs,
    so they read SGLang pods through the engine metric table (aibrix_spec.engine_metrics)."""
    from aibrix_spec.components.scaler import ScalerConfig
    from compiler.pipeline import compile_stack

    text = STANDALONE.read_text().replace(
        "    - name: qwen2-5-7b\n      source:\n        uri: hf://Qwen/Qwen2.5-7B-Instruct\n",
        "    - name: qwen2-5-7b\n      source:\n        uri: hf://Qwen/Qwen2.5-7B-Instruct\n      engine:\n        type: sglang\n", 1)
    files = compile_stack(text, source_name="stack.yaml")
    gateway = parse_config(yaml.safe_load(files["gateway/configmap-aibrix-gateway.yaml"])["data"]["gateway.yaml"], "gw")
    assert {m.name: m.engine for m in gateway.models} == {"llama-3-8b": "vllm", "qwen2-5-7b": "sglang", "qwen2-5-0-5b": "vllm"}
    scaler = ScalerConfig.model_validate(yaml.safe_load(yaml.safe_load(files["autoscaler/configmap-aibrix-scaler.yaml"])["data"]["scaler.yaml"]))
    engines = {t.name: t.metric.engine.engine for t in scaler.targets if t.metric.source == "engine"}
    assert engines == {"qwen2-5-7b": "sglang"}
    deployment = yaml.safe_load(files["engine/deployment-qwen2-5-7b.yaml"])
    assert deployment["spec"]["template"]["metadata"]["labels"]["model.aibrix.ai/engine"] == "sglang"


def test_workers_set_the_gateway_pod_envoys_endpoints_and_the_network_policy(tmp_path):
    """gateway.workers: 3 reaches gateway.yaml, the pod's ports and CPU, the NetworkPolicy's port
    range, Envoy's ext_proc cluster (one endpoint per worker port), threads and CPU; the bootstrap
    validates."""
    from compiler.pipeline import compile_stack

    text = STANDALONE.read_text().replace("    mode: standalone\n", "    mode: standalone\n    workers: 3\n", 1)
    files = compile_stack(text, source_name="stack.yaml")
    gateway = parse_config(yaml.safe_load(files["gateway/configmap-aibrix-gateway.yaml"])["data"]["gateway.yaml"], "gw")
    assert gateway.workers == 3
    container = yaml.safe_load(files["gateway/statefulset-aibrix-gateway.yaml"])["spec"]["template"]["spec"]["containers"][0]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("grpc", 50051), ("grpc-1", 50052), ("grpc-2", 50053), ("http", gateway.listen.http_port)]
    assert container["resources"]["requests"]["cpu"] == "1500m"
    policy = yaml.safe_load(files["gateway/networkpolicy-aibrix-gateway.yaml"])
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 50051, "endPort": 50053}]
    bootstrap = yaml.safe_load(files["gateway/configmap-aibrix-envoy.yaml"])["data"]["envoy.yaml"]
    cluster = yaml.safe_load(bootstrap)["static_resources"]["clusters"][1]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"]
            for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]] == [50051, 50052, 50053]
    # Envoy gets as many threads and as much CPU as the gateway pod (not one thread per node core)
    envoy = yaml.safe_load(files["gateway/deployment-aibrix-envoy.yaml"])["spec"]["template"]["spec"]["containers"][0]
    assert envoy["args"][-2:] == ["--concurrency", "3"]
    assert envoy["resources"]["requests"]["cpu"] == "1500m"
    if envoy_binary() is not None:
        (tmp_path / "envoy.yaml").write_text(bootstrap)
        result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_workers_under_envoy_gateway_is_a_spec_error():
    from compiler.errors import SpecError
    from compiler.pipeline import compile_stack

    text = STANDALONE.read_text().replace("    mode: standalone\n", "    mode: envoy-gateway\n    workers: 2\n", 1)
    with pytest.raises(SpecError) as err:
        compile_stack(text, source_name="stack.yaml")
    diagnostic = err.value.diagnostics[0]
    assert "gateway.workers is 2" in diagnostic.message and "standalone" in diagnostic.hint
