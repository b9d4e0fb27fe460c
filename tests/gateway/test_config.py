"""The gateway config file and the CLI's handling of bad input: one message, exit 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from runtime_components.gateway.config_file import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[2]

MINIMAL = "discovery: {mode: static, endpointsFile: e.yaml}\nmodels: [{name: m}]\n"


def test_minimal_config_gets_defaults():
    config = parse_config(MINIMAL, "gw.yaml")
    assert config.models[0].routing.policy == "least-request"
    assert (config.listen.grpc_port, config.scrape.staleness_s, config.fallbacks) == (50051, 3.0, 2)


BAD = [
    # (config text, a fragment of the message: file:line:col and field path, then the problem)
    ("models: []", "error: gw.yaml:1:9: models\n  List should have at least 1 item"),
    ("[1, 2]", "error: gw.yaml:1:1\n  expected a mapping of GatewayConfig fields at the top"),
    ("models: [{name: m, routing: {policy: fastest}}]",
     'error: gw.yaml:1:38: models[0].routing.policy\n  unknown routing policy "fastest"'),
    ("models: [{name: m, adapter: [x]}]",
     "error: gw.yaml:1:20: models[0].adapter\n  unknown field `adapter`\n"
     "      1 | models: [{name: m, adapter: [x]}]\n        |                    ^\n  hint: did you mean `adapters`?"),
    ("modles: [{name: m}]", "error: gw.yaml:1:1: modles\n  unknown field `modles`"),
    ("models: [{name: m}]\ndiscovery: {mode: static}",
     "error: gw.yaml:2:19: discovery.mode\n  discovery.mode is static but discovery.endpointsFile is not set"),
    ("models: [{name: m, adapters: [m]}]", '"m" is declared twice (as model and as adapter of m)'),
    ("models: [{name: m}]\nrateLimits: {defaultTier: gold}",
     'error: gw.yaml:2:27: rateLimits.defaultTier\n  rateLimits.defaultTier "gold" is not a tier; tiers: (none defined)'),
    ("models: [{name: m}]\nrateLimits: {tiers: {free: {rpm: 0, tpm: 5}}}",
     "error: gw.yaml:2:34: rateLimits.tiers.free.rpm\n  Input should be greater than or equal to 1"),
    ("models: [{name: m}]\nlisten: {grpcPort: 70000}",
     "error: gw.yaml:2:20: listen.grpcPort\n  Input should be less than or equal to 65535"),
    ("models: [{name: m}]\nlisten: {eventLoop: trio}",
     "error: gw.yaml:2:21: listen.eventLoop\n  `trio` is not allowed here\n      2 | listen: {eventLoop: trio}\n"
     "        |                     ^\n  hint: expected one of: 'auto', 'uvloop' or 'asyncio'"),
    ("models: {", "error: gw.yaml:1:10\n  YAML syntax error: expected the node content"),
    ("models: [{name: m}]\nmodels: [{name: n}]", "error: gw.yaml:2:1: models\n  duplicate key `models`"),
]


@pytest.mark.parametrize("text,fragment", BAD)
def test_bad_configs(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.yaml")
    assert fragment in str(info.value)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime_components.gateway.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_errors_are_one_message_and_exit_2(tmp_path):
    config = tmp_path / "gw.yaml"
    cases = [
        ((str(tmp_path / "absent.yaml"),), "cannot read the file: No such file or directory\n  hint: pass --config FILE"),
        (None, 'gw.yaml:1:38: models[0].routing.policy\n  unknown routing policy "fastest"'),
        ("endpoints", "endpoints[0]: address \"nowhere\" is not ip:port"),
        ("users", "tier \"gold\" is not defined"),
        ("redis", "cannot reach Redis at rateLimits.redisUrl"),
        ("password", "rateLimits.redisPasswordFile"),
    ]
    for case, fragment in cases:
        if case is None:
            config.write_text("models: [{name: m, routing: {policy: fastest}}]\n")
            args = (str(config),)
        elif case == "endpoints":
            (tmp_path / "e.yaml").write_text("endpoints: [{address: nowhere, model: m}]\n")
            config.write_text(f"discovery: {{mode: static, endpointsFile: {tmp_path / 'e.yaml'}}}\nmodels: [{{name: m}}]\n")
            args = (str(config),)
        elif case == "users":
            (tmp_path / "e.yaml").write_text("endpoints: []\n")
            (tmp_path / "u.yaml").write_text("users: [{name: a, apiKey: key-aaaaaaaa, tier: gold}]\n")
            config.write_text(f"discovery: {{mode: static, endpointsFile: {tmp_path / 'e.yaml'}}}\nmodels: [{{name: m}}]\n"
                              f"rateLimits: {{usersFile: {tmp_path / 'u.yaml'}, tiers: {{free: {{rpm: 1, tpm: 1}}}}}}\n")
            args = (str(config),)
        elif case in ("redis", "password"):
            (tmp_path / "e.yaml").write_text("endpoints: []\n")
            extra = f", redisPasswordFile: {tmp_path / 'absent'}" if case == "password" else ""
            config.write_text(f"discovery: {{mode: static, endpointsFile: {tmp_path / 'e.yaml'}}}\nmodels: [{{name: m}}]\n"
                              f"rateLimits: {{redisUrl: 'redis://127.0.0.1:9/0'{extra}}}\n")
            args = (str(config),)
        else:
            args = case
        result = run_cli("--config", *args, "--grpc-port", "0", "--http-port", "0")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_event_loop_choice(monkeypatch):
    import uvloop

    from runtime_components.gateway.cli import loop_factory

    assert parse_config(MINIMAL, "gw.yaml").listen.event_loop == "auto"
    assert loop_factory("asyncio") is None
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    assert loop_factory("auto") is None
    with pytest.raises(ConfigError, match="listen.eventLoop is uvloop but uvloop is not installed"):
        loop_factory("uvloop")
