"""Helpers of the renderer-family tests: compile a stack dict through the whole pipeline."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from compiler.pipeline import compile_manifests

from .helpers import dump


def compiled(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object (labelled, namespaced, checksummed) of a stack given as a dict."""
    _plan, manifests = compile_manifests(dump(data), source_name="t.yaml")
    return [m.body for m in manifests]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def assert_valid(objects: list[dict[str, Any]]) -> None:
    """kubernetes-validate strict for core kinds, the vendored CRDs for custom resources."""
    pytest.importorskip("kubernetes_validate")
    from compiler.output_check import check_objects

    # Round-trip through YAML, as the golden tests do, so the objects are plain data.
    plain = [yaml.safe_load(yaml.safe_dump(o)) for o in objects]
    assert check_objects(plain, kube_version="1.37", crd_dir=None) == []


def containers(pod_template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every container by name, native sidecars (restartable init containers) included."""
    spec = pod_template["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
