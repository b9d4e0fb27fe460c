"""Pure pieces of the fake Kubernetes API: object builders, label selectors and patch semantics.

Everything here is plain JSON in, plain JSON out, so the server (``server.py``) only routes.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

__all__ = [
    "PatchError",
    "Requirement",
    "apply_node_patch",
    "matches",
    "merge_patch",
    "node_object",
    "parse_selector",
    "now_rfc3339",
    "pod_object",
    "pod_status",
    "replicas_from_patch",
    "status_object",
]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# Lists a strategic merge patch merges by a key field instead of replacing (NodeStatus).
_STRATEGIC_LIST_KEYS = {"conditions": "type", "addresses": "type"}
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")

Requirement = tuple[str, str, str]  # (key, operator, value); operator: = != exists !exists


class PatchError(ValueError):
    """A patch the API server refuses: `code` 415 (content type) or 422 (content)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `Status` failure, as the real API server answers errors (clients raise ApiException on it)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def pod_object(name: str, labels: dict[str, str], *, namespace: str = "default", ip: str | None = "10.0.0.1",
               phase: str | None = None, ready: bool = True, terminating: bool = False,
               image: str = "aibrix-engine-sim") -> dict[str, Any]:
    """A Pod as the API returns it, with only the fields our components read (phase: Running when ready)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels),
                            "creationTimestamp": now_rfc3339()}
    if terminating:
        meta["deletionTimestamp"] = now_rfc3339()
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "engine", "image": image}]},
            "status": pod_status(ip=ip, phase=phase or ("Running" if ready else "Pending"), ready=ready)}


def pod_status(*, ip: str | None, phase: str, ready: bool) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase,
                              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return status


def node_object(name: str, *, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Ready Node with the given taints."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": copy.deepcopy(taints or [])},
        "status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is ready",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]},
    }


def parse_selector(text: str) -> list[Requirement]:
    """Equality (`k=v`, `k==v`, `k!=v`) and existence (`k`, `!k`) terms; set-based terms are refused."""
    requirements: list[Requirement] = []
    for raw in filter(None, (t.strip() for t in re.split(r",(?![^()]*\))", text))):  # not inside (a,b)
        if raw.startswith("!") and _LABEL_KEY.fullmatch(raw[1:]):
            requirements.append((raw[1:], "!exists", ""))
            continue
        if _LABEL_KEY.fullmatch(raw):
            requirements.append((raw, "exists", ""))
            continue
        match = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)", raw)
        if match is None or not _LABEL_KEY.fullmatch(match.group(1)):
            raise ValueError(f"unsupported label selector term {raw!r}: only equality (=, ==, !=) "
                             "and existence (key, !key) terms are implemented")
        key, op, value = match.groups()
        requirements.append((key, "!=" if op == "!=" else "=", value))
    return requirements


def matches(labels: dict[str, str], requirements: list[Requirement]) -> bool:
    for key, op, value in requirements:
        present = key in labels
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and present and labels[key] == value:
            return False
        if (op == "exists" and not present) or (op == "!exists" and present):
            return False
    return True


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 JSON merge patch; `strategic` also merges the keyed lists of `_STRATEGIC_LIST_KEYS`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif strategic and key in _STRATEGIC_LIST_KEYS and isinstance(value, list):
            result[key] = _merge_keyed_list(result.get(key) or [], value, _STRATEGIC_LIST_KEYS[key])
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def _merge_keyed_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = {item[key]: item for item in current}
    for item in patch:
        merged[item[key]] = {**merged.get(item[key], {}), **item}
    return list(merged.values())


def apply_node_patch(node: dict[str, Any], content_type: str, body: Any, *, subresource: str) -> dict[str, Any]:
    """The node after a PATCH of the main resource (spec and metadata) or of `status`."""
    if content_type not in (MERGE_PATCH, STRATEGIC_PATCH):
        raise PatchError(415, f"unsupported patch content type {content_type!r} for nodes "
                              f"(the fake implements {MERGE_PATCH} and {STRATEGIC_PATCH})")
    if not isinstance(body, dict):
        raise PatchError(422, "a merge patch must be a JSON object")
    patch = copy.deepcopy(body)
    patch.get("metadata", {}).pop("resourceVersion", None)
    # Like the real server: the main resource ignores status, the status subresource only takes status.
    patch = {"status": patch.get("status", {})} if subresource == "status" else {**patch, "status": {}}
    result: dict[str, Any] = merge_patch(node, patch, strategic=content_type == STRATEGIC_PATCH)
    return result


def replicas_from_patch(content_type: str, body: Any) -> int:
    """`spec.replicas` from a PATCH of a scale subresource, in any of the three patch types."""
    if content_type in (MERGE_PATCH, STRATEGIC_PATCH):
        value = body.get("spec", {}).get("replicas") if isinstance(body, dict) else None
    elif content_type == JSON_PATCH:
        if not isinstance(body, list):
            raise PatchError(422, "a JSON patch must be a list of operations")
        ops = [op for op in body if isinstance(op, dict) and op.get("path") == "/spec/replicas"
               and op.get("op") in ("replace", "add")]
        value = ops[-1].get("value") if ops else None
    else:
        raise PatchError(415, f"unsupported content type {content_type!r} for PATCH")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PatchError(422, f"spec.replicas: Invalid value: {value!r}: must be a non-negative integer")
    return value
