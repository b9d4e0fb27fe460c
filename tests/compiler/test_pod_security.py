"""Every pod of every example meets the Pod Security Standards "restricted" profile, and every
pod is covered by the stack's default-deny NetworkPolicy with only the flows the plan knows.

The profile's rules, as the Kubernetes documentation lists them (Pod Security Standards,
"Baseline" and "Restricted" tables): no host namespaces, host ports, hostPath or privileged
containers; only the restricted volume types; no privilege escalation; runAsNonRoot and a
non-zero runAsUser; seccomp RuntimeDefault or Localhost; every capability dropped, only
NET_BIND_SERVICE added back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from compiler import compile_stack
from compiler.manifest import pod_templates

from .helpers import EXAMPLES, dump, minimal

_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
_SECCOMP = {"RuntimeDefault", "Localhost"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every rule of the "restricted" profile the pod spec breaks (empty: it complies)."""
    out = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"{key} is set")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _VOLUMES:
            out.append(f"volume {volume['name']} is {sorted(kinds)}")
    pod_sc = pod.get("securityContext", {})
    for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            out.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in _SECCOMP:
            out.append(f"{name}: seccompProfile is {seccomp}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
    return out


def _objects(path: Path) -> list[dict[str, Any]]:
    files = compile_stack(path.read_text(encoding="utf-8"), source_name=path.name)
    return [yaml.safe_load(text) for rel, text in files.items() if rel != "kustomization.yaml"]


def _pods(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        for template in pod_templates(o):
            yield f"{o['kind']}/{o['metadata']['name']}", template


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_pod_meets_the_restricted_profile(example: Path) -> None:
    problems = {name: v for name, pod in _pods(_objects(example)) if (v := restricted_violations(pod["spec"]))}
    assert problems == {}


def test_the_checker_catches_a_root_engine() -> None:
    pod = {"containers": [{"name": "engine", "securityContext": {"allowPrivilegeEscalation": False}}]}
    assert restricted_violations(pod) == [
        "engine: runAsNonRoot is not true",
        "engine: seccompProfile is None",
        "engine: capabilities not dropped",
    ]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_pod_is_denied_by_default(example: Path) -> None:
    objects = _objects(example)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    (deny,) = [p for p in policies if p["metadata"]["name"] == "aibrix-default-deny"]
    assert "ingress" not in deny["spec"] and deny["spec"]["policyTypes"] == ["Ingress"]
    for name, pod in _pods(objects):
        labels = pod["metadata"]["labels"]
        assert _selects(deny["spec"]["podSelector"]["matchLabels"], labels), f"{name} escapes the default deny"
        admitting = [p for p in policies if p is not deny and _selects(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert admitting, f"{name}: no policy admits any flow to it"


def test_no_rule_admits_a_label_anyone_can_set() -> None:
    """Every peer names its namespace by the API-server-set name label (or is same-namespace)."""
    for example in sorted(EXAMPLES.glob("*.yaml")):
        for o in _objects(example):
            if o["kind"] != "NetworkPolicy":
                continue
            for rule in o["spec"].get("ingress", []):
                for peer in rule.get("from", []):
                    if "namespaceSelector" in peer:
                        assert list(peer["namespaceSelector"]["matchLabels"]) == ["kubernetes.io/metadata.name"], (example.name, peer)


def test_ray_ports_stay_inside_their_cluster() -> None:
    data = minimal(models=[{"name": "big", "source": {"uri": "hf://org/m"}, "placement": {"pools": ["l4"]},
                            "parallelism": {"tensor": 4, "pipeline": 2}, "replicas": {"min": 2}}])
    files = compile_stack(dump(data), source_name="t.yaml")
    policies = {yaml.safe_load(t)["metadata"]["name"]: yaml.safe_load(t) for rel, t in files.items() if "networkpolicy-" in rel}
    engines = policies["aibrix-engines"]["spec"]["ingress"]
    assert [r["ports"] for r in engines] == [[{"protocol": "TCP", "port": 8000}]]  # the API port only
    for k in (0, 1):
        spec = policies[f"big-{k}-ray"]["spec"]
        assert spec["podSelector"]["matchLabels"]["aibrix.ai/ray-cluster"] == f"big-{k}"
        assert spec["ingress"] == [{"from": [{"podSelector": {"matchLabels": spec["podSelector"]["matchLabels"]}}]}]


def test_bare_engines_admit_their_namespace_or_the_named_clients() -> None:
    default = compile_stack(dump(minimal()), source_name="t.yaml")["engine/networkpolicy-aibrix-engines.yaml"]
    assert "kubernetes.io/metadata.name: llm" in default
    named = minimal(network={"clients": [{"namespace": "apps", "podSelector": {"app": "chat"}}]})
    policy = yaml.safe_load(compile_stack(dump(named), source_name="t.yaml")["engine/networkpolicy-aibrix-engines.yaml"])
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers[0] == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}, "podSelector": {"matchLabels": {"app": "chat"}}}


def test_engines_request_cpu_and_memory() -> None:
    files = compile_stack(dump(minimal()), source_name="t.yaml")
    engine = yaml.safe_load(files["engine/deployment-small.yaml"])["spec"]["template"]["spec"]["containers"][0]
    # nvidia-l4: 24 GiB; one GPU -> 2 + 2 CPUs, 8 + 12 GiB.
    assert engine["resources"]["requests"] == {"cpu": "4", "memory": "20Gi", "nvidia.com/gpu": 1}
    custom = minimal(models=[{"name": "small", "source": {"uri": "hf://o/m"}, "placement": {"pools": ["l4"]},
                              "engine": {"resources": {"cpu": "6", "memory": "48Gi"}}}])
    engine = yaml.safe_load(compile_stack(dump(custom), source_name="t.yaml")["engine/deployment-small.yaml"])
    assert engine["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "6"
