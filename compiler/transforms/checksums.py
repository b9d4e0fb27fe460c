"""Transformer: roll pods when the configuration they mount changes.

For every pod template (:func:`compiler.manifest.pod_templates`), the ConfigMaps and Secrets of this output that the pod uses
(volumes, ``envFrom``, ``env[].valueFrom``) are hashed into the annotation
``aibrix.ai/config-checksum``: sha256 over canonical JSON (sorted keys) of
``[[kind, name, data], ...]`` sorted by (kind, name). Objects the pod references but this
output does not contain (user-managed Secrets) are not hashed: we cannot see them, and nor
are ConfigMaps annotated ``aibrix.ai/hot-reloaded`` (the component re-reads them itself, as
the gateway does its routes: a weight change must not roll the gateway).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from ..manifest import HOT_RELOADED, Manifest, pod_templates
from ..plan import Plan

__all__ = ["ANNOTATION", "add_config_checksums", "referenced_configs"]

ANNOTATION = "aibrix.ai/config-checksum"


def referenced_configs(pod_spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every ConfigMap/Secret a pod spec refers to."""
    for volume in pod_spec.get("volumes", []):
        if "configMap" in volume:
            yield ("ConfigMap", volume["configMap"]["name"])
        if "secret" in volume:
            yield ("Secret", volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                yield ("ConfigMap", source["configMap"]["name"])
            if "secret" in source:
                yield ("Secret", source["secret"]["name"])
    for container in pod_spec.get("initContainers", []) + pod_spec.get("containers", []):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield ("ConfigMap", source["configMapRef"]["name"])
            if "secretRef" in source:
                yield ("Secret", source["secretRef"]["name"])
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                yield ("ConfigMap", ref["configMapKeyRef"]["name"])
            if "secretKeyRef" in ref:
                yield ("Secret", ref["secretKeyRef"]["name"])


def add_config_checksums(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    configs = {
        (m.kind, m.namespace, m.name): {k: m.body.get(k) for k in ("data", "binaryData", "stringData") if k in m.body}
        for m in manifests
        if m.kind in ("ConfigMap", "Secret")
        and m.body.get("metadata", {}).get("annotations", {}).get(HOT_RELOADED) != "true"
    }
    out = []
    for m in manifests:
        body = m.body
        for index, template in enumerate(pod_templates(m.body)):
            used = sorted(
                {
                    (kind, name)
                    for kind, name in referenced_configs(template.get("spec", {}))
                    if (kind, m.namespace, name) in configs
                }
            )
            if not used:
                continue
            canonical = json.dumps(
                [[kind, n, configs[(kind, m.namespace, n)]] for kind, n in used], sort_keys=True, separators=(",", ":")
            )
            if body is m.body:
                body = copy.deepcopy(m.body)
            target = list(pod_templates(body))[index]
            annotations = target.setdefault("metadata", {}).setdefault("annotations", {})
            annotations[ANNOTATION] = hashlib.sha256(canonical.encode()).hexdigest()
            target["metadata"]["annotations"] = dict(sorted(annotations.items()))
        out.append(m if body is m.body else Manifest(m.component, body))
    return out
