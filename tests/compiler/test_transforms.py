"""Transformers: namespace, labels, config checksums, key order and sorting."""

from __future__ import annotations

from typing import Any

import pytest

from compiler.errors import CompilerBug
from compiler.manifest import Manifest
from compiler.transforms import TRANSFORMERS, transform
from compiler.transforms.checksums import ANNOTATION, add_config_checksums
from compiler.transforms.labels import add_labels
from compiler.transforms.namespace import set_namespace
from compiler.transforms.ordering import order_keys, sort_manifests

from .helpers import minimal
from .test_plan_render import plan_of

PLAN = plan_of(minimal())


def deployment(name: str = "d", volumes: list[dict[str, Any]] | None = None) -> Manifest:
    return Manifest(
        "engine",
        {
            "spec": {
                "selector": {"matchLabels": {"x": "1"}},
                "template": {"metadata": {"labels": {"x": "1"}}, "spec": {"containers": [], "volumes": volumes or []}},
            },
            "metadata": {"labels": {"b": "2"}, "name": name},
            "kind": "Deployment",
            "apiVersion": "apps/v1",
        },
    )


def config_map(name: str, data: dict[str, str]) -> Manifest:
    return Manifest("engine", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "llm"}, "data": data})


def test_the_order_is_listed_once() -> None:
    assert [name for name, _ in TRANSFORMERS] == ["namespace", "labels", "config-checksums", "key-order", "sort"]


@pytest.mark.parametrize("kind, namespaced", [("Deployment", True), ("ClusterRole", False), ("Namespace", False)])
def test_namespace(kind: str, namespaced: bool) -> None:
    (m,) = set_namespace(PLAN, [Manifest("x", {"kind": kind, "metadata": {"name": "n", "namespace": "llm"}})])
    assert ("namespace" in m.body["metadata"]) is namespaced


def test_namespace_from_another_renderer_is_a_bug() -> None:
    with pytest.raises(CompilerBug, match="rendered into namespace elsewhere"):
        set_namespace(PLAN, [Manifest("x", {"kind": "Service", "metadata": {"name": "n", "namespace": "elsewhere"}})])


def test_labels_reach_metadata_and_pod_template_but_not_selectors() -> None:
    (m,) = add_labels(PLAN, [deployment()])
    common = {
        "app.kubernetes.io/component": "engine",
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/managed-by": "aibrix-compile",
        "app.kubernetes.io/part-of": "aibrix",
    }
    assert m.body["metadata"]["labels"] == {**common, "b": "2"}
    assert m.body["spec"]["template"]["metadata"]["labels"] == {**common, "x": "1"}
    assert m.body["spec"]["selector"] == {"matchLabels": {"x": "1"}}
    assert list(m.body["metadata"]["labels"]) == sorted(m.body["metadata"]["labels"])


def test_checksum_changes_with_referenced_config_data_only() -> None:
    volumes = [{"name": "c", "configMap": {"name": "cfg"}}]

    def checksum(data: dict[str, str], other: dict[str, str]) -> str:
        out = add_config_checksums(
            PLAN, set_namespace(PLAN, [deployment(volumes=volumes), config_map("cfg", data), config_map("other", other)])
        )
        return out[0].body["spec"]["template"]["metadata"]["annotations"][ANNOTATION]

    assert checksum({"a": "1"}, {"z": "1"}) == checksum({"a": "1"}, {"z": "2"})
    assert checksum({"a": "1"}, {"z": "1"}) != checksum({"a": "2"}, {"z": "1"})


def test_no_checksum_for_configs_outside_the_output() -> None:
    volumes = [{"name": "s", "secret": {"secretName": "user-managed"}}]
    (m, _cm) = add_config_checksums(PLAN, set_namespace(PLAN, [deployment(volumes=volumes), config_map("cfg", {})]))
    assert "annotations" not in m.body["spec"]["template"]["metadata"]


def test_key_order() -> None:
    (m,) = order_keys(PLAN, [deployment()])
    assert list(m.body) == ["apiVersion", "kind", "metadata", "spec"]
    assert list(m.body["metadata"]) == ["name", "labels"]


def test_sort_by_kind_priority_then_namespace_then_name() -> None:
    items = [
        Manifest("engine", {"kind": "Deployment", "metadata": {"name": "b"}}),
        Manifest("engine", {"kind": "Service", "metadata": {"name": "z"}}),
        Manifest("engine", {"kind": "Deployment", "metadata": {"name": "a"}}),
        Manifest("x", {"kind": "Widget", "metadata": {"name": "a"}}),
        Manifest("engine", {"kind": "ServiceAccount", "metadata": {"name": "z"}}),
    ]
    assert [(m.kind, m.name) for m in sort_manifests(PLAN, items)] == [
        ("ServiceAccount", "z"),
        ("Service", "z"),
        ("Deployment", "a"),
        ("Deployment", "b"),
        ("Widget", "a"),
    ]


def test_two_objects_with_one_identity_are_a_bug() -> None:
    twice = [Manifest("engine", {"kind": "Service", "metadata": {"name": "a"}})] * 2
    with pytest.raises(CompilerBug, match="two objects named Service /a"):
        sort_manifests(PLAN, twice)


def test_transform_is_pure() -> None:
    original = deployment()
    snapshot = repr(original.body)
    transform(PLAN, [original])
    assert repr(original.body) == snapshot
