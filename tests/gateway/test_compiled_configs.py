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
