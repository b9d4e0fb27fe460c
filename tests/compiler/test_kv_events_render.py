"""prefixCacheAware.index: kv-events: the engines publish KV events, the gateway is told where
and may reach them; engines or block sizes that cannot match are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compiler import SpecValidationError

from .component_stacks import FULL, config_file, engine_args, objects, set_model, validation_problems

KV_EVENTS = {"policy": "prefix-cache-aware:2,least-request", "parameters": {"prefixCacheAware": {"index": "kv-events"}}}


def _stack(**updates: Any) -> dict[str, Any]:
    return set_model(FULL, 1, routing=KV_EVENTS, **updates)  # qwen: no KV pool, port 8001


def test_the_engine_publishes_on_a_named_port_with_the_index_block_size(tmp_path: Path) -> None:
    objs = objects(_stack())
    args = engine_args(objs, "qwen")
    config = json.loads(args[args.index("--kv-events-config") + 1])
    assert config == {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": "tcp://*:5557", "topic": ""}
    assert args[args.index("--block-size") + 1] == "16"
    container = objs[("Deployment", "qwen")]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "kv-events", "containerPort": 5557, "protocol": "TCP"} in container["ports"]
    assert "--kv-events-config" not in engine_args(objs, "llama-3-8b-l20")  # decisions, the default
    assert validation_problems(objs) == []

    from runtime_components.gateway.config_file import load_config

    gateway = load_config(str(config_file(objs, "aibrix-gateway", "gateway.yaml", tmp_path)))
    by_name = {m.name: m for m in gateway.models}
    assert by_name["qwen"].kv_events_port == 5557 and by_name["llama-3-8b"].kv_events_port is None
    assert by_name["qwen"].routing.parameters.prefix_cache_aware.index == "kv-events"


def test_only_the_gateway_may_reach_the_event_port() -> None:
    rules = objects(_stack())[("NetworkPolicy", "aibrix-engines")]["spec"]["ingress"]
    events = [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": 5557}]]
    assert len(events) == 1
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in events[0]["from"]] == ["aibrix-gateway"]
    plain = objects(FULL)[("NetworkPolicy", "aibrix-engines")]["spec"]["ingress"]
    assert all(5557 not in [p["port"] for p in r["ports"]] for r in plain)


def test_sglang_cannot_feed_the_index() -> None:
    with pytest.raises(SpecValidationError) as info:
        objects(_stack(engine={"type": "sglang", "port": 8001}))
    (problem,) = info.value.diagnostics
    assert problem.path == ("spec", "models", 1, "routing", "parameters", "prefixCacheAware", "index")
    assert "needs vLLM's KV-cache events; model qwen runs sglang" in problem.message
    assert problem.expected == "index: decisions, or engine.type: vllm"


def test_an_engine_block_size_unlike_the_index_is_refused() -> None:
    with pytest.raises(SpecValidationError) as info:
        objects(_stack(engine={"port": 8001, "args": {"blockSize": 32}}))
    (problem,) = info.value.diagnostics
    assert problem.path[-1] == "blockSizeTokens" and problem.expected == "blockSizeTokens: 32"


def test_the_kv_pools_block_size_must_match_too() -> None:
    data = set_model(FULL, 0, routing=KV_EVENTS)
    data["spec"]["kvCache"]["blockSizeTokens"] = 32
    with pytest.raises(SpecValidationError, match="uses blocks of 32 tokens, its prefix index 16"):
        objects(data)


def test_the_cli_warns_that_compiled_gateways_tokenize_approximately(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    stack = tmp_path / "stack.yaml"
    stack.write_text(yaml.safe_dump(_stack()))
    run = subprocess.run([sys.executable, "-m", "compiler.cli", str(stack)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("warning: model qwen: prefixCacheAware.index kv-events") and "tokenizerFile" in line
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(FULL))
    assert subprocess.run([sys.executable, "-m", "compiler.cli", str(plain)], capture_output=True, text=True,
                          timeout=120).stderr == ""
