"""Prefill/decode disaggregation: spec errors (one each, with line and path), the plan's role
workloads and engine flags, per-role autoscaling, the gateway's pairing, the decode -> prefill
NetworkPolicy, cost per role, and determinism."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from compiler import SpecError, compile_stack
from compiler.errors import render_diagnostics
from compiler.explain import explain_table
from compiler.pipeline import compile_manifests

from .helpers import EXAMPLES, dump
from .render_helpers import assert_valid, of_kind

BASE: dict[str, Any] = {
    "apiVersion": "aibrix.ai/v1alpha1",
    "kind": "InferenceStack",
    "metadata": {"name": "pd", "namespace": "llm"},
    "spec": {
        "gpuPools": [
            {"name": "h100", "accelerator": "nvidia-h100", "gpusPerNode": 8},
            {"name": "l20", "accelerator": "nvidia-l20", "gpusPerNode": 8},
        ],
        "gateway": {},
        "models": [
            {
                "name": "m",
                "source": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct"},
                "placement": {"pools": ["h100"]},
                "disaggregation": {
                    "transfer": "nixl",
                    "prefill": {"parallelism": {"tensor": 2}},
                    "decode": {"replicas": {"min": 2}},
                },
            }
        ],
    },
}


def stack(**changes: Any) -> dict[str, Any]:
    """BASE with dotted keys under the model replaced (``disaggregation.transfer="kv-pool"``);
    ``spec_*`` keys replace spec sections."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key.startswith("spec_"):
            data["spec"][key.removeprefix("spec_")] = value
            continue
        node = data["spec"]["models"][0]
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def the_error(data: dict[str, Any]) -> tuple[SpecError, str]:
    text = dump(data)
    with pytest.raises(SpecError) as info:
        compile_stack(text, source_name="pd.yaml")
    return info.value, render_diagnostics(info.value.diagnostics, source_name="pd.yaml", text=text)


def objects(data: dict[str, Any]) -> list[dict[str, Any]]:
    _plan, manifests = compile_manifests(dump(data), source_name="pd.yaml")
    return [m.body for m in manifests]


def engine(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


# ---------------------------------------------------------------- spec errors


@pytest.mark.parametrize(
    "changes, path, message",
    [
        ({"disaggregation.decode": None}, ("spec", "models", 0, "disaggregation", "decode"), 'missing required field "decode"'),
        ({"disaggregation.transfer": "rdma"}, ("spec", "models", 0, "disaggregation", "transfer"), "rdma"),
        ({"disaggregation.transfer": "mooncake"}, ("spec", "models", 0, "disaggregation", "transfer"),
         "transfer mooncake is not one vllm runs"),
        ({"engine": {"type": "sglang"}, "disaggregation.transfer": "kv-pool", "spec_kvCache": {}},
         ("spec", "models", 0, "disaggregation", "transfer"), "transfer kv-pool is not one sglang runs"),
        ({"disaggregation.transfer": "kv-pool"}, ("spec", "models", 0, "disaggregation", "transfer"),
         "transfer kv-pool hands the KV cache over through the shared KV-cache pool, which is not enabled"),
        ({"spec_gateway": None}, ("spec", "models", 0, "disaggregation"),
         "disaggregation pairs a prefill pod with a decode pod per request in the gateway, which is not enabled"),
        ({"disaggregation.decode": {"placement": {"pools": ["l2"]}}},
         ("spec", "models", 0, "disaggregation", "decode", "placement", "pools", 0), 'unknown pool "l2"'),
        ({"disaggregation.prefill": {"parallelism": {"tensor": 8, "pipeline": 2}}},
         ("spec", "models", 0, "disaggregation", "prefill", "parallelism"),
         "multi-node (KubeRay) replicas are not supported with disaggregation yet"),
        ({"adapters": [{"name": "sql", "source": {"uri": "hf://o/sql-lora"}}]}, ("spec", "models", 0, "adapters"),
         "LoRA adapters are not supported with disaggregation yet"),
        ({"kvCache": {"enabled": True}, "spec_kvCache": {}}, ("spec", "models", 0, "kvCache", "enabled"),
         "a vLLM engine loads one KV connector, and transfer nixl loads NixlConnector"),
        ({"engine": {"args": {"kvTransferConfig": "{}"}}}, ("spec", "models", 0, "engine", "args", "kvTransferConfig"),
         'engine argument "kvTransferConfig" is derived by the compiler'),
        ({"engine": {"env": {"VLLM_NIXL_SIDE_CHANNEL_PORT": "6000"}}},
         ("spec", "models", 0, "engine", "env", "VLLM_NIXL_SIDE_CHANNEL_PORT"), "set by the compiler for transfer nixl"),
        ({"disaggregation.decode": {"replicas": {"min": 2, "max": 4}}},
         ("spec", "models", 0, "disaggregation", "decode", "replicas", "max"), "autoscaling.policy is none"),
        ({"spec_optimizer": {}, "disaggregation.decode": {"autoscaling": {
            "policy": "kpa", "metric": "optimizer_desired_replicas", "target": 1}}},
         ("spec", "models", 0, "disaggregation", "decode", "autoscaling", "metric"), "the optimizer places whole models"),
    ],
)
def test_one_clear_error_with_line_and_path(changes: dict[str, Any], path: tuple[Any, ...], message: str) -> None:
    error, text = the_error(stack(**changes))
    found = [d for d in error.diagnostics if d.path == path]
    assert found, f"no error at {path}: {text}"
    assert message in found[0].message
    assert found[0].line > 0 and "expected:" in text
    assert len([d for d in error.diagnostics if message in d.message]) == 1


def test_sglang_transfer_names_are_its_own() -> None:
    for transfer in ("mooncake", "nixl"):
        compile_stack(dump(stack(**{"engine": {"type": "sglang"}, "disaggregation.transfer": transfer})), source_name="t")
    error, text = the_error(stack(**{"engine": {"type": "sglang"}, "disaggregation.transfer": "kv-pool", "spec_kvCache": {}}))
    assert "vLLM connector" in text and "mooncake" in text  # the reason, and what to write instead


# ---------------------------------------------------------------- plan and output


def test_one_workload_per_role_labelled_with_its_role() -> None:
    out = objects(stack())
    deployments = of_kind(out, "Deployment")
    assert {"m-prefill", "m-decode"} <= set(deployments)
    for role in ("prefill", "decode"):
        d = deployments[f"m-{role}"]
        assert d["metadata"]["labels"]["model.aibrix.ai/role"] == role
        assert d["spec"]["selector"]["matchLabels"]["model.aibrix.ai/role"] == role
        assert d["spec"]["template"]["metadata"]["labels"]["model.aibrix.ai/role"] == role
    assert deployments["m-decode"]["spec"]["replicas"] == 2
    assert deployments["m-prefill"]["spec"]["replicas"] == 1  # the model's own replicas
    assert engine(deployments["m-prefill"])["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert engine(deployments["m-decode"])["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert set(of_kind(out, "PodDisruptionBudget")) >= {"m-prefill", "m-decode"}
    services = of_kind(out, "Service")
    assert services["m"]["spec"]["selector"]["model.aibrix.ai/role"] == "decode"
    assert services["m-prefill"]["spec"]["selector"]["model.aibrix.ai/role"] == "prefill"
    assert_valid(out)


def test_heterogeneous_role_has_one_workload_per_pool() -> None:
    out = objects(stack(**{"disaggregation.decode": {"replicas": {"min": 3}, "placement": {"pools": ["h100", "l20"]}}}))
    deployments = of_kind(out, "Deployment")
    assert deployments["m-decode-h100"]["spec"]["replicas"] == 2
    assert deployments["m-decode-l20"]["spec"]["replicas"] == 1
    assert deployments["m-decode-l20"]["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L20"}


def test_vllm_nixl_flags_env_and_ports() -> None:
    deployments = of_kind(objects(stack()), "Deployment")
    for role in ("prefill", "decode"):
        container = engine(deployments[f"m-{role}"])
        config = json.loads(flag(container["args"], "--kv-transfer-config") or "{}")
        assert config == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
        env = {e["name"]: e for e in container["env"]}
        assert env["VLLM_NIXL_SIDE_CHANNEL_PORT"]["value"] == "5600"
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert {"name": "nixl", "containerPort": 5600, "protocol": "TCP"} in container["ports"]
    prefill = engine(deployments["m-prefill"])
    assert flag(prefill["args"], "--tensor-parallel-size") == "2"
    assert {"name": "nixl-1", "containerPort": 5601, "protocol": "TCP"} in prefill["ports"]  # one per TP rank


def test_vllm_kv_pool_producer_and_consumer() -> None:
    deployments = of_kind(objects(stack(**{"disaggregation.transfer": "kv-pool", "spec_kvCache": {}})), "Deployment")
    roles = {}
    for role in ("prefill", "decode"):
        container = engine(deployments[f"m-{role}"])
        config = json.loads(flag(container["args"], "--kv-transfer-config") or "{}")
        assert config["kv_connector"] == "AIBrixKVConnector"
        roles[role] = config["kv_role"]
        assert flag(container["args"], "--block-size") == "16"
        assert "VLLM_NIXL_SIDE_CHANNEL_PORT" not in {e["name"] for e in container["env"]}
        assert any(c["name"] == "aibrix-packages" for c in deployments[f"m-{role}"]["spec"]["template"]["spec"]["initContainers"])
    assert roles == {"prefill": "kv_producer", "decode": "kv_consumer"}


@pytest.mark.parametrize("transfer", ["mooncake", "nixl"])
def test_sglang_flags(transfer: str) -> None:
    out = objects(stack(**{"engine": {"type": "sglang"}, "disaggregation.transfer": transfer}))
    deployments = of_kind(out, "Deployment")
    prefill, decode = engine(deployments["m-prefill"]), engine(deployments["m-decode"])
    assert flag(prefill["args"], "--disaggregation-mode") == "prefill"
    assert flag(decode["args"], "--disaggregation-mode") == "decode"
    for container in (prefill, decode):
        assert flag(container["args"], "--disaggregation-transfer-backend") == transfer
    assert flag(prefill["args"], "--disaggregation-bootstrap-port") == "8998"
    assert "--disaggregation-bootstrap-port" not in decode["args"]
    assert {"name": "pd-bootstrap", "containerPort": 8998, "protocol": "TCP"} in prefill["ports"]
    link = of_kind(out, "NetworkPolicy")["m-pd-transfer"]["spec"]
    assert link["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8998}]
    config = gateway_config(out)["models"][0]["disaggregation"]
    assert config["bootstrapPort"] == 8998 and config["transfer"] == transfer


def gateway_config(out: list[dict[str, Any]]) -> dict[str, Any]:
    data = of_kind(out, "ConfigMap")["aibrix-gateway"]["data"]
    return yaml.safe_load(next(iter(data.values())))


def test_gateway_pairs_decode_selector_with_prefill_selector() -> None:
    config = gateway_config(objects(stack(**{"disaggregation.minPromptTokens": 1024})))
    model = config["models"][0]
    assert model["selector"]["model.aibrix.ai/role"] == "decode"
    pd = model["disaggregation"]
    assert pd["prefillSelector"]["model.aibrix.ai/role"] == "prefill"
    assert pd["prefillSelector"]["model.aibrix.ai/name"] == "m"
    assert (pd["transfer"], pd["minPromptTokens"], pd["prefillPort"]) == ("nixl", 1024, 8000)
    assert "bootstrapPort" not in pd


def test_decode_routing_defaults_to_load_and_kv_usage_unless_set() -> None:
    assert gateway_config(objects(stack()))["models"][0]["routing"]["policy"] == "least-request,least-kv-cache"
    mine = gateway_config(objects(stack(routing={"policy": "least-latency"})))
    assert mine["models"][0]["routing"]["policy"] == "least-latency"


def test_each_role_scales_on_its_own_metric() -> None:
    out = objects(stack(**{
        "disaggregation.prefill": {"replicas": {"min": 1, "max": 4},
                                   "autoscaling": {"policy": "hpa", "metric": "num_requests_waiting", "target": 4}},
        "disaggregation.decode": {"replicas": {"min": 2, "max": 8},
                                  "autoscaling": {"policy": "kpa", "metric": "kv_cache_usage", "target": 0.7}},
    }))
    hpas = of_kind(out, "HorizontalPodAutoscaler")
    assert set(hpas) == {"m-prefill"}
    assert hpas["m-prefill"]["spec"]["maxReplicas"] == 4
    scaler = yaml.safe_load(next(iter(of_kind(out, "ConfigMap")["aibrix-scaler"]["data"].values())))
    (target,) = scaler["targets"]
    assert target["name"] == "m-decode" and target["metric"]["name"] == "vllm:kv_cache_usage_perc"
    assert target["podSelector"]["model.aibrix.ai/role"] == "decode"
    assert (target["minReplicas"], target["maxReplicas"]) == (2, 8)
    deployments = of_kind(out, "Deployment")
    assert "replicas" not in deployments["m-prefill"]["spec"] and "replicas" not in deployments["m-decode"]["spec"]


def test_decode_pods_reach_prefill_pods_on_the_side_channels_only() -> None:
    out = objects(stack())
    policy = of_kind(out, "NetworkPolicy")["m-pd-transfer"]["spec"]
    assert policy["podSelector"]["matchLabels"]["model.aibrix.ai/role"] == "prefill"
    (rule,) = policy["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"]["model.aibrix.ai/role"] == "decode"
    assert rule["ports"] == [{"protocol": "TCP", "port": 5600, "endPort": 5601}]  # prefill TP 2
    # kv-pool: both sides talk to the pool only; no pod-to-pod policy.
    pooled = objects(stack(**{"disaggregation.transfer": "kv-pool", "spec_kvCache": {}}))
    assert "m-pd-transfer" not in of_kind(pooled, "NetworkPolicy")


def test_explain_counts_both_roles() -> None:
    plan, _ = compile_manifests((EXAMPLES / "pd-hetero.yaml").read_text(), source_name="pd-hetero.yaml")
    table = explain_table(plan)
    prefill = next(line for line in table.splitlines() if "(prefill)" in line).split()
    decode = next(line for line in table.splitlines() if "(decode)" in line).split()
    total = next(line for line in table.splitlines() if line.startswith("TOTAL")).split()
    # prefill: 2-8 x 4 H100; decode: 4-16 x 4 L20
    assert prefill[2:4] == ["h100", "4"] and decode[2:4] == ["l20", "4"]
    assert float(total[1]) == pytest.approx(float(prefill[-2]) + float(decode[-2]))
    assert float(total[2]) == pytest.approx(float(prefill[-1]) + float(decode[-1]))


@pytest.mark.parametrize("example", ["pd.yaml", "pd-hetero.yaml"])
def test_examples_compile_deterministically(example: str) -> None:
    text = (EXAMPLES / example).read_text()
    first = compile_stack(text, source_name=example)
    assert compile_stack(text, source_name=example) == first
    # Reordering keys of the role specs changes nothing.
    data = yaml.safe_load(text)
    pd = data["spec"]["models"][0]["disaggregation"]
    data["spec"]["models"][0]["disaggregation"] = {k: dict(reversed(list(v.items()))) if isinstance(v, dict) else v
                                                   for k, v in reversed(list(pd.items()))}
    assert compile_stack(dump(data), source_name=example) == first


def test_envoy_waits_for_the_prefill_call_inside_the_body_phase() -> None:
    """The gateway calls the prefill pod before it answers Envoy's body message: Envoy's
    ext_proc message timeout must outlast the gateway's prefill timeout."""
    from aibrix_spec.components.gateway import DisaggregationConfig

    plan, _ = compile_manifests(dump(stack()), source_name="pd.yaml")
    assert plan.gateway is not None
    prefill_timeout = DisaggregationConfig.model_fields["prefill_timeout_s"].default
    assert plan.gateway.ext_proc_message_timeout_s > prefill_timeout


def test_a_role_whose_weights_cannot_fit_is_one_error_at_its_tensor_size() -> None:
    data = yaml.safe_load((EXAMPLES / "pd-hetero.yaml").read_text())
    data["spec"]["models"][0]["disaggregation"]["decode"]["parallelism"]["tensor"] = 2
    error, text = the_error(data)
    assert [d.path for d in error.diagnostics] == [
        ("spec", "models", 0, "disaggregation", "decode", "parallelism", "tensor")]
    assert "llama-3-70b (141 GB of weights) does not fit on a replica of 2 x nvidia-l20" in text
    assert "at least 4 GPUs per replica" in text


def test_short_prompts_on_prefill_pods_is_told_to_the_gateway_only_when_turned_off() -> None:
    assert "shortPromptsOnPrefillPods" not in gateway_config(objects(stack()))["models"][0]["disaggregation"]
    data = stack()
    data["spec"]["models"][0]["disaggregation"]["shortPromptsOnPrefillPods"] = False
    assert gateway_config(objects(data))["models"][0]["disaggregation"]["shortPromptsOnPrefillPods"] is False


def _spills(data: dict[str, Any]) -> bool:
    pd = gateway_config(objects(data))["models"][0]["disaggregation"]
    return bool(pd.get("shortPromptsOnPrefillPods", True))


@pytest.mark.parametrize(("changes", "spills"), [
    ({}, True),  # prefill TP2 on H100 decodes at least as fast as decode TP1 on H100
    ({"disaggregation.decode.parallelism": {"tensor": 4}}, False),  # the decode pod is the faster
    ({"disaggregation.decode.placement": {"pools": ["l20"]}}, True),  # 2 x H100 against 1 x L20
    ({"disaggregation.prefill.placement": {"pools": ["l20"]}, "disaggregation.prefill.parallelism": {"tensor": 1},
      "disaggregation.decode.placement": {"pools": ["h100"]}}, False),  # 1 x L20 against 1 x H100
    ({"disaggregation.decode.parallelism": {"tensor": 4}, "disaggregation.shortPromptsOnPrefillPods": True}, True),
    ({"disaggregation.shortPromptsOnPrefillPods": False}, False),
])  # fmt: skip
def test_short_prompts_spill_by_default_only_to_prefill_pods_that_decode_as_fast(
    changes: dict[str, Any], spills: bool
) -> None:
    assert _spills(stack(**changes)) is spills


@pytest.mark.parametrize(("prefill_tensor", "decode_tensor", "spills"), [(2, 1, True), (1, 2, False)])
def test_gpus_outside_the_catalogue_compare_by_tensor_parallelism(prefill_tensor: int, decode_tensor: int,
                                                                  spills: bool) -> None:
    data = stack(**{"disaggregation.prefill.parallelism": {"tensor": prefill_tensor},
                    "disaggregation.decode.parallelism": {"tensor": decode_tensor},
                    "placement": {"pools": ["rtx"]}})
    data["spec"]["gpuPools"].append({"name": "rtx", "product": "NVIDIA-RTX-6000-Ada-Generation", "memoryGib": 48,
                                     "costPerGpuHour": 1.25, "gpusPerNode": 4})
    assert _spills(data) is spills
