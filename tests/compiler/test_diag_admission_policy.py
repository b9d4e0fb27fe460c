"""The diagnostics daemon's node writes are confined by a ValidatingAdmissionPolicy (1.30+):
its CEL is evaluated here (cel-python) against admission requests the API server would send."""

from __future__ import annotations

import copy
from typing import Any

import celpy
import pytest
import yaml

from compiler import compile_stack

from .helpers import dump, minimal

USER = "system:serviceaccount:llm:aibrix-diag"
NODE = {
    "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
    "spec": {"taints": [{"key": "team", "value": "a", "effect": "NoSchedule"}]},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}


def _policy(kube_version: str) -> dict[str, Any] | None:
    stack = minimal(diagnostics={"taintOnFailure": True, "nodeCondition": True})
    files = compile_stack(dump(stack), source_name="t.yaml", kube_version=kube_version)
    found = [yaml.safe_load(t) for rel, t in files.items() if "validatingadmissionpolicy-" in rel]
    return next((p for p in found if p["kind"] == "ValidatingAdmissionPolicy"), None)


def _admitted(policy: dict[str, Any], *, user: str, token_node: str | None, old: dict[str, Any], new: dict[str, Any]) -> bool:
    env = celpy.Environment()
    extra = {"authentication.kubernetes.io/node-name": [token_node]} if token_node else {}
    activation = {
        "request": celpy.json_to_cel({"userInfo": {"username": user, "extra": extra}}),
        "object": celpy.json_to_cel(new),
        "oldObject": celpy.json_to_cel(old),
    }
    (condition,) = policy["spec"]["matchConditions"]
    if not env.program(env.compile(condition["expression"])).evaluate(activation):
        return True  # the policy does not apply to this requester
    return all(bool(env.program(env.compile(v["expression"])).evaluate(activation)) for v in policy["spec"]["validations"])


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    found = _policy("1.30")
    assert found is not None
    return found


def _with(change: Any) -> dict[str, Any]:
    node = copy.deepcopy(NODE)
    change(node)
    return node


def test_own_taint_and_condition_on_own_node_pass(policy: dict[str, Any]) -> None:
    def own(node: dict[str, Any]) -> None:
        node["spec"]["taints"].append({"key": "aibrix.ai/gpu-unhealthy", "effect": "NoSchedule"})
        node["status"]["conditions"].append({"type": "AIBrixGPUProblem", "status": "True"})

    assert _admitted(policy, user=USER, token_node="gpu-1", old=NODE, new=_with(own))


@pytest.mark.parametrize(
    ("what", "token_node", "change"),
    [
        ("another node", "gpu-2", lambda n: n["spec"]["taints"].append({"key": "aibrix.ai/gpu-unhealthy", "effect": "NoSchedule"})),
        ("a token without node claim", None, lambda n: None),
        ("someone else's taint", "gpu-1", lambda n: n["spec"].update(taints=[])),
        ("someone else's condition", "gpu-1", lambda n: n["status"]["conditions"][0].update(status="False")),
        ("a label", "gpu-1", lambda n: n["metadata"]["labels"].update(evil="1")),
    ],
)
def test_anything_else_is_denied(policy: dict[str, Any], what: str, token_node: str | None, change: Any) -> None:
    assert not _admitted(policy, user=USER, token_node=token_node, old=NODE, new=_with(change)), what


def test_other_users_are_not_matched(policy: dict[str, Any]) -> None:
    assert _admitted(policy, user="system:node:gpu-1", token_node=None, old=NODE, new=_with(lambda n: n["spec"].update(taints=[])))


def test_only_from_1_30() -> None:
    assert _policy("1.29") is None
