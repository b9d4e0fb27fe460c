"""Pass 7, serialize: list[Manifest] -> {path: YAML text}, the one dumper config.

One object per file, ``<component>/<kind>-<name>.yaml``, plus ``kustomization.yaml``
listing them in apply order. The stdout stream is the same files' texts, each preceded by
``---``, so ``-o DIR`` and ArgoCD's stream can never disagree.

Dumper: block style, no anchors or aliases, keys in the order the transformers left them,
no line folding, and PyYAML's safe representer, which quotes any string YAML 1.1 would
read as another type (``on``, ``yes``, ``1.0``, ``0755``).
"""

from __future__ import annotations

from typing import Any

import yaml

from .manifest import Manifest

__all__ = ["KUSTOMIZATION", "dump_yaml", "serialize", "to_stream"]

KUSTOMIZATION = "kustomization.yaml"

_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Safe dumper that never writes anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """The single YAML formatting used for every file the compiler writes."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=1 << 20,
        indent=2,
    )


def serialize(manifests: list[Manifest]) -> dict[str, str]:
    """Files in apply order, then kustomization.yaml."""
    files = {m.file_name: dump_yaml(m.body) for m in manifests}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    files[KUSTOMIZATION] = dump_yaml(kustomization)
    return files


def to_stream(files: dict[str, str]) -> str:
    """The multi-document stream of every object file (kustomization.yaml excluded)."""
    return "".join(f"---\n{text}" for path, text in files.items() if path != KUSTOMIZATION)
