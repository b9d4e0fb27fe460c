"""Validation of compiled objects: core kinds with kubernetes-validate, CRs with a CRD dir.

``kubernetes-validate`` (a test/validation dependency, never imported on the compile path)
checks each built-in object against the OpenAPI schema of the target Kubernetes version
in strict mode (unknown fields are errors). Kinds it has no schema for are custom
resources and go to :mod:`.crds`: against the vendored CRDs by default, or the CRDs of
``crd_dir``. A custom resource whose group has no CRD there is reported as unchecked
rather than silently passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .crds import VENDORED_CRDS, load_crds, validate_custom_resources
from .errors import UsageError

__all__ = ["check_objects"]


def check_objects(objects: list[dict[str, Any]], *, kube_version: str, crd_dir: Path | None) -> list[str]:
    """Every problem found in ``objects`` (empty = all valid); ``crd_dir`` None = the vendored CRDs."""
    try:
        import kubernetes_validate
    except ImportError:
        raise UsageError(
            "output validation needs the kubernetes-validate package; install it with "
            "pip install 'aibrix-stack[test]' (or pip install kubernetes-validate)"
        ) from None
    errors: list[str] = []
    custom: list[dict[str, Any]] = []
    for obj in objects:
        ident = f"{obj.get('kind')} {obj.get('metadata', {}).get('namespace', '-')}/{obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.append(obj)
        except kubernetes_validate.ValidationError as exc:
            path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
            errors.append(f"{ident}: {path}: {exc.message[:300]}")
    if not custom:
        return errors
    directory = crd_dir if crd_dir is not None else VENDORED_CRDS
    where = "in --crd-dir" if crd_dir is not None else "among the vendored CRDs; pass --crd-dir DIR with its CRD to validate it"
    groups = {str(o.get("apiVersion", "")).rpartition("/")[0] for o in custom}
    registry = load_crds(directory, groups=groups)
    errors += validate_custom_resources(custom, registry)
    errors += [
        f"{o.get('kind')} {o.get('metadata', {}).get('name')}: no CRD for {o.get('apiVersion')} {where}"
        for o in custom
        if str(o.get("apiVersion", "")).rpartition("/")[0] not in registry.groups
    ]
    return errors
