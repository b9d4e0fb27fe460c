"""Flow control's engine side: vLLM engines schedule by the priority the gateway sets."""

from __future__ import annotations

from typing import Any

import yaml

from compiler import compile_stack

from .helpers import dump, minimal


def _stack(flow: dict[str, Any] | None, engine: str = "vllm") -> dict[str, Any]:
    data = minimal(gateway={"enabled": True, **({"flowControl": flow} if flow is not None else {})})
    data["spec"]["models"][0]["engine"] = {"type": engine}
    return data


def _engine_args_and_gateway_model(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    files = compile_stack(dump(data), source_name="t.yaml")
    documents = [d for text in files.values() for d in yaml.safe_load_all(text) if d]
    deployment = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "small")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    config = next(d for d in documents if d["kind"] == "ConfigMap" and "gateway.yaml" in d.get("data", {}))
    return args, yaml.safe_load(config["data"]["gateway.yaml"])["models"][0]


def test_flow_control_turns_on_vllm_priority_scheduling_and_tells_the_gateway() -> None:
    args, model = _engine_args_and_gateway_model(_stack({"enabled": True}))
    assert args[args.index("--scheduling-policy") + 1] == "priority"
    assert model["enginePriority"] is True


def test_without_flow_control_or_when_turned_off_engines_stay_fcfs() -> None:
    for flow in (None, {"enabled": True, "enginePriority": False}):
        args, model = _engine_args_and_gateway_model(_stack(flow))
        assert "--scheduling-policy" not in args and "enginePriority" not in model


def test_sglang_engines_get_no_priorities() -> None:
    args, model = _engine_args_and_gateway_model(_stack({"enabled": True}, engine="sglang"))
    assert "--scheduling-policy" not in args and "enginePriority" not in model
