"""Offline validation of custom resources against the openAPIV3Schema of their CRDs.

Used by ``--validate`` and the golden tests. The CRDs of every kind the compiler emits are
vendored in ``compiler/vendored_crds/`` (pinned upstream releases, listed with their
sources in its SOURCES.md), so validation needs no network and no other checkout;
``--crd-dir`` replaces them with another directory. What the API server does with strict
field validation, approximated with jsonschema (Draft 4, as Kubernetes structural schemas
are):

- null fields are dropped and schema defaults filled in before checking;
- an object schema without ``additionalProperties`` and without
  ``x-kubernetes-preserve-unknown-fields`` rejects unknown fields (the server would prune
  them; strict validation reports them);
- ``x-kubernetes-int-or-string`` means integer or string; ``nullable`` admits null;
- ``x-kubernetes-list-type: set`` means unique items; ``map`` means unique keys;
- root ``metadata`` is checked as an ObjectMeta.

Not checked: CEL rules (``x-kubernetes-validations``) and ``format``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["VENDORED_CRDS", "CrdRegistry", "load_crds", "to_json_schema", "validate_custom_resources"]

#: The pinned CRDs shipped with the compiler (package data).
VENDORED_CRDS = Path(__file__).resolve().parent / "vendored_crds"

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = {"type": "string"}
_STR_MAP = {"type": "object", "additionalProperties": _STR}
_OBJECT_META: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": _STR,
        "generateName": _STR,
        "namespace": _STR,
        "labels": _STR_MAP,
        "annotations": _STR_MAP,
        "finalizers": {"type": "array", "items": _STR},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": _STR,
        "resourceVersion": _STR,
        "generation": {"type": "integer"},
        "creationTimestamp": {},
        "deletionTimestamp": {},
        "deletionGracePeriodSeconds": {},
        "managedFields": {"type": "array"},
        "selfLink": _STR,
    },
}
_DOC_ONLY = frozenset({"description", "example", "x-kubernetes-validations", "format"})


def to_json_schema(node: Any, *, inside_combinator: bool = False) -> Any:
    """A Draft-4 JSON Schema equivalent of one Kubernetes structural-schema node."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DOC_ONLY:
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_json_schema(value, inside_combinator=inside_combinator)
        elif key == "not":
            out[key] = to_json_schema(value, inside_combinator=True)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub, inside_combinator=True) for sub in value]
        elif key == "pattern":  # RE2 allows inline flags mid-pattern; Python wants them first
            out[key] = re.sub(r"^\^\(\?([ims]+)\)", r"(?\1)^", value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        out.pop("anyOf", None)
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    is_object = node.get("type") == "object" or "properties" in node
    if (
        is_object
        and not inside_combinator
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _list_map_keys(validator: Any, keys: list[str], instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    defaults = (schema.get("items") or {}).get("properties", {})
    seen: dict[tuple[Any, ...], int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k, defaults.get(k, {}).get("default")) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate entry for keys {dict(zip(keys, key))} (first at index {seen[key]})")
        seen.setdefault(key, i)


# types-jsonschema leaves extend() unannotated.
_KubeValidator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft4Validator, {"x-kubernetes-list-map-keys": _list_map_keys}
)


@dataclass
class _Version:
    schema: dict[str, Any]
    served: bool
    validator: Any = None

    def get_validator(self) -> Any:
        if self.validator is None:  # translate lazily, once per CRD version
            root = to_json_schema(self.schema)
            props = root.setdefault("properties", {})
            props.setdefault("apiVersion", _STR)
            props.setdefault("kind", _STR)
            meta = dict(_OBJECT_META)
            meta["properties"] = {**_OBJECT_META["properties"], **props.get("metadata", {}).get("properties", {})}
            props["metadata"] = meta
            self.validator = _KubeValidator(root)
        return self.validator


@dataclass
class CrdRegistry:
    """(group, kind) -> version -> schema, loaded from a directory of CRD YAML files."""

    kinds: dict[tuple[str, str], dict[str, _Version]] = field(default_factory=dict)

    @property
    def groups(self) -> set[str]:
        return {group for group, _ in self.kinds}


def _declares_group(text: str, groups: set[str]) -> bool:
    return any(re.search(rf"^\s*group:\s*[\"']?{re.escape(g)}[\"']?\s*$", text, re.M) for g in groups)


@functools.lru_cache(maxsize=256)
def _read_crds(path: Path, _stamp: tuple[int, int]) -> tuple[str, list[tuple[tuple[str, str], dict[str, _Version]]]]:
    """(text, [((group, kind), versions)]) of one file; cached per (path, mtime, size).

    The cached :class:`_Version` objects keep their translated validators, so the golden
    tests (and ``validate`` over many stacks) translate each CRD schema once.
    """
    text = path.read_text(encoding="utf-8")
    found: list[tuple[tuple[str, str], dict[str, _Version]]] = []
    for doc in yaml.load_all(text, Loader=_Loader):
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        versions = {
            version["name"]: _Version(
                schema=(version.get("schema") or {}).get("openAPIV3Schema") or {}, served=version.get("served", True)
            )
            for version in spec.get("versions", [])
        }
        found.append(((spec["group"], spec["names"]["kind"]), versions))
    return text, found


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def load_crds(directory: Path, *, groups: set[str] | None = None) -> CrdRegistry:
    """Read the CustomResourceDefinitions in ``directory`` (*.yaml, *.yml).

    With ``groups``, files that declare none of them are skipped before parsing: by name in
    the vendored directory (``<group>_<plural>.yaml``), else by a cheap text test (CRD
    bundles are megabytes of YAML and most objects need one or two).
    """
    registry = CrdRegistry()
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml")):
        if groups is not None:
            if directory == VENDORED_CRDS:  # named <group>_<plural>.yaml (SOURCES.md)
                if path.name.partition("_")[0] not in groups:
                    continue
            elif not _declares_group(path.read_text(encoding="utf-8"), groups):
                continue
        _text, found = _read_crds(path, _stamp(path))
        for key, versions in found:
            registry.kinds.setdefault(key, {}).update(versions)
    return registry


def _prepare(obj: Any, node: Any) -> Any:
    """Drop nulls and fill schema defaults, as the API server does before validating."""
    node = node if isinstance(node, dict) else {}
    if isinstance(obj, list):
        return [_prepare(item, node.get("items")) for item in obj]
    if not isinstance(obj, dict):
        return obj
    props, extra = node.get("properties", {}), node.get("additionalProperties")
    out = {k: _prepare(v, props.get(k, extra)) for k, v in obj.items() if v is not None}
    for key, sub in props.items():
        if key not in out and isinstance(sub, dict) and "default" in sub:
            out[key] = _prepare(sub["default"], sub)
    return out


def _describe(error: Any) -> Iterator[str]:
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = error.schema.get("properties", {})
        for extra in (k for k in error.instance if k not in known):
            yield f'{where}.{extra}: unknown field "{extra}"'
    else:
        yield f"{where}: {error.message[:300]}"


def validate_custom_resources(objects: list[dict[str, Any]], registry: CrdRegistry) -> list[str]:
    """Errors for every object whose group has CRDs in ``registry``; others are skipped."""
    errors: list[str] = []
    for obj in objects:
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        kind = str(obj.get("kind", ""))
        name = f"{kind} {obj.get('metadata', {}).get('namespace', '-')}/{obj.get('metadata', {}).get('name', '?')}"
        if group not in registry.groups:
            continue
        entry = registry.kinds.get((group, kind), {}).get(version)
        if entry is None or not entry.served:
            errors.append(f"{name}: no CRD in the directory serves {kind} in {group}/{version}")
            continue
        validator = entry.get_validator()
        found = sorted(
            (line for err in validator.iter_errors(_prepare(obj, validator.schema)) for line in _describe(err)),
        )
        errors.extend(f"{name}: {line}" for line in found)
    return errors
