"""serialize: one dumper config, safe quoting, no anchors, file layout and stream."""

from __future__ import annotations

import pytest
import yaml

from compiler.manifest import Manifest
from compiler.serialize import KUSTOMIZATION, dump_yaml, serialize, to_stream


@pytest.mark.parametrize("text", ["on", "off", "yes", "no", "true", "null", "1.0", "0755", "1e3", "~", "8000", "2024-01-01", "- a", "a: b", "#x"])
def test_ambiguous_strings_stay_strings(text: str) -> None:
    assert yaml.safe_load(dump_yaml({"v": text})) == {"v": text}


def test_shared_objects_are_written_out_without_anchors() -> None:
    shared = {"k": "v"}
    out = dump_yaml({"a": shared, "b": shared})
    assert "&" not in out and "*" not in out
    assert out == "a:\n  k: v\nb:\n  k: v\n"


def test_long_strings_are_not_folded() -> None:
    long = "x " * 200
    assert dump_yaml({"v": long}).count("\n") == 1


def test_layout_and_stream() -> None:
    manifests = [
        Manifest("engine", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m"}}),
        Manifest("engine", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m"}}),
    ]
    files = serialize(manifests)
    assert list(files) == ["engine/service-m.yaml", "engine/deployment-m.yaml", KUSTOMIZATION]
    assert yaml.safe_load(files[KUSTOMIZATION])["resources"] == ["engine/service-m.yaml", "engine/deployment-m.yaml"]
    stream = to_stream(files)
    assert [d["kind"] for d in yaml.safe_load_all(stream)] == ["Service", "Deployment"]
    assert stream.startswith("---\napiVersion: v1\n")
