"""Custom-resource validation against CRD schemas, and the core-object output check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from compiler.crds import VENDORED_CRDS, CrdRegistry, load_crds, to_json_schema, validate_custom_resources

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {x-kubernetes-int-or-string: true}
                mode: {type: string, default: fast, enum: [fast, slow]}
                note: {type: string, nullable: true}
                tags: {type: array, items: {type: string}, x-kubernetes-list-type: set}
                ports:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [name]
                  items: {type: object, properties: {name: {type: string}, port: {type: integer}}}
                free: {type: object, x-kubernetes-preserve-unknown-fields: true}
    - name: v0
      served: false
      storage: false
      schema: {openAPIV3Schema: {type: object}}
"""


@pytest.fixture
def registry(tmp_path: Path) -> CrdRegistry:
    (tmp_path / "widgets.yaml").write_text(WIDGET_CRD)
    (tmp_path / "notes.txt").write_text("not a CRD")
    return load_crds(tmp_path)


def widget(spec: dict[str, Any], version: str = "v1", kind: str = "Widget") -> dict[str, Any]:
    return {"apiVersion": f"example.com/{version}", "kind": kind, "metadata": {"name": "w", "namespace": "n"}, "spec": spec}


@pytest.mark.parametrize(
    "spec, errors",
    [
        ({"size": 3}, []),
        ({"size": "50%"}, []),
        ({"size": 1, "note": None}, []),  # nulls are dropped
        ({"size": 1, "free": {"anything": {"goes": 1}}}, []),
        ({}, ["Widget n/w: $.spec: 'size' is a required property"]),
        ({"size": 1.5}, ["Widget n/w: $.spec.size: 1.5 is not of type 'integer', 'string'"]),
        ({"size": 1, "mode": "medium"}, ["Widget n/w: $.spec.mode: 'medium' is not one of ['fast', 'slow']"]),
        ({"size": 1, "colour": "red"}, ['Widget n/w: $.spec.colour: unknown field "colour"']),
        ({"size": 1, "tags": ["a", "a"]}, ["Widget n/w: $.spec.tags: ['a', 'a'] has non-unique elements"]),
        (
            {"size": 1, "ports": [{"name": "http", "port": 1}, {"name": "http", "port": 2}]},
            ["Widget n/w: $.spec.ports: duplicate entry for keys {'name': 'http'} (first at index 0)"],
        ),
    ],
)
def test_widget_validation(registry: CrdRegistry, spec: dict[str, Any], errors: list[str]) -> None:
    assert validate_custom_resources([widget(spec)], registry) == errors


def test_unknown_version_or_kind_in_a_known_group(registry: CrdRegistry) -> None:
    assert validate_custom_resources([widget({"size": 1}, version="v0")], registry) == [
        "Widget n/w: no CRD in the directory serves Widget in example.com/v0"
    ]
    assert validate_custom_resources([widget({}, kind="Gadget")], registry) == [
        "Gadget n/w: no CRD in the directory serves Gadget in example.com/v1"
    ]


def test_objects_of_other_groups_are_skipped(registry: CrdRegistry) -> None:
    assert validate_custom_resources([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}], registry) == []


def test_metadata_is_checked_as_object_meta(registry: CrdRegistry) -> None:
    obj = widget({"size": 1})
    obj["metadata"]["labels"] = {"a": 1}
    assert validate_custom_resources([obj], registry) == ["Widget n/w: $.metadata.labels.a: 1 is not of type 'string'"]


def test_translation_keeps_combinators_open() -> None:
    node = {"type": "object", "anyOf": [{"properties": {"a": {"type": "string"}}}], "pattern": "^(?i)x$"}
    out = to_json_schema(node)
    assert out["additionalProperties"] is False and "additionalProperties" not in out["anyOf"][0]
    assert out["pattern"] == "(?i)^x$"


VENDORED_CASES = [
    (
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "m", "namespace": "llm"},
            "spec": {
                "scaleTargetRef": {"name": "m"},
                "minReplicaCount": 1,
                "maxReplicaCount": 4,
                "triggers": [{"type": "prometheus", "metadata": {"serverAddress": "http://p:9090", "query": "sum(x)", "threshold": "8"}}],
            },
        },
        [],
    ),
    (
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "m"},
            "spec": {"scaleTargetRef": {"name": "m"}, "triggers": [{"type": "cpu", "metadata": {"value": "50"}}], "maxReplica": 3},
        },
        ['ScaledObject -/m: $.spec.maxReplica: unknown field "maxReplica"'],
    ),
    (
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "m", "namespace": "llm"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "http", "path": "/metrics"}]},
        },
        [],
    ),
]


@pytest.mark.parametrize("obj, errors", VENDORED_CASES, ids=lambda v: v["kind"] if isinstance(v, dict) else str(len(v)))
def test_against_the_vendored_crds(obj: dict[str, Any], errors: list[str]) -> None:
    groups = {obj["apiVersion"].rpartition("/")[0]}
    assert validate_custom_resources([obj], load_crds(VENDORED_CRDS, groups=groups)) == errors


@pytest.mark.parametrize(
    "mutate, crd_dir, expected",
    [
        (lambda d: d, None, []),
        (lambda d: d["spec"]["template"]["spec"].update(bogus=1), None, ["Deployment llm/x: $.spec.template.spec: Additional properties are not allowed ('bogus' was unexpected)"]),
        (lambda d: d["spec"].update(replicas="two"), None, ["Deployment llm/x: $.spec.replicas: 'two' is not of type 'integer', 'null'"]),
    ],
)
def test_core_objects_are_checked_strictly(mutate: Any, crd_dir: Path | None, expected: list[str]) -> None:
    pytest.importorskip("kubernetes_validate")
    from compiler.output_check import check_objects

    deployment = yaml.safe_load(
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: x, namespace: llm}
        spec:
          selector: {matchLabels: {a: b}}
          template:
            metadata: {labels: {a: b}}
            spec: {containers: [{name: c, image: i}]}
        """
    )
    mutate(deployment)
    assert check_objects([deployment], kube_version="1.37", crd_dir=crd_dir) == expected


def test_custom_resource_without_crd_dir_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_validate")
    from compiler.output_check import check_objects

    obj = widget({"size": 1})
    assert check_objects([obj], kube_version="1.37", crd_dir=None) == [
        "Widget w: no CRD for example.com/v1 among the vendored CRDs; pass --crd-dir DIR with its CRD to validate it"
    ]
    assert check_objects([obj], kube_version="1.37", crd_dir=tmp_path) == ["Widget w: no CRD for example.com/v1 in --crd-dir"]


def _git_blob_sha1(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_vendored_crds_are_the_pinned_upstream_files() -> None:
    # SOURCES.md names each file's upstream release and git blob; the copies must be unedited.
    rows = [line.split("|") for line in (VENDORED_CRDS / "SOURCES.md").read_text().splitlines() if line.startswith("| `")]
    listed = {cells[1].strip().strip("`"): cells[8].strip().strip("`") for cells in rows}
    files = {p.name for p in VENDORED_CRDS.glob("*.yaml")}
    assert set(listed) == files
    for name, blob in listed.items():
        assert _git_blob_sha1((VENDORED_CRDS / name).read_bytes()) == blob, name


def test_every_custom_resource_kind_the_examples_emit_has_a_vendored_crd() -> None:
    from compiler import compile_stack
    from compiler.serialize import KUSTOMIZATION

    from .helpers import EXAMPLES

    built_in = {"", "apps", "policy", "autoscaling", "batch", "networking.k8s.io", "rbac.authorization.k8s.io",
                "admissionregistration.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "node.k8s.io"}
    emitted = set()
    for example in sorted(EXAMPLES.glob("*.yaml")):
        for rel, text in compile_stack(example.read_text(), source_name=example.name).items():
            doc = yaml.safe_load(text)
            group = str(doc["apiVersion"]).rpartition("/")[0]
            if rel != KUSTOMIZATION and group not in built_in:
                emitted.add((group, doc["kind"]))
    assert emitted and emitted <= set(load_crds(VENDORED_CRDS).kinds)
