"""Turn an adapter's declared URI into the ``lora_path`` the engine loads.

- ``hf://org/repo[@revision]`` -> ``org/repo``: vLLM resolves Hugging Face repo ids itself
  and authenticates with ``HF_TOKEN`` from the engine's environment (a Secret reference).
- ``file:///path`` -> ``/path``: a volume mounted into the engine container.
- ``s3://bucket/prefix`` -> a local copy under ``artifact_dir/<adapter>``, downloaded with
  boto3 (credentials from the standard ``AWS_*`` variables, i.e. a Secret reference); the
  directory is shared with the engine container.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["ArtifactError", "resolve_lora_path"]


class ArtifactError(Exception):
    """The adapter's weights could not be made available to the engine."""


def resolve_lora_path(name: str, uri: str, artifact_dir: str, *, s3_client: Any | None = None) -> str:
    if uri.startswith("hf://"):
        repo = uri[len("hf://") :].split("@", 1)[0]
        return repo
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("s3://"):
        return _download_s3(name, uri, Path(artifact_dir), s3_client)
    raise ArtifactError(f"adapter {name!r}: unsupported uri {uri!r}; expected hf://, s3:// or file://")


def _download_s3(name: str, uri: str, artifact_dir: Path, client: Any | None) -> str:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    target = artifact_dir / name
    marker = target / ".complete"
    if marker.exists() and marker.read_text() == uri:
        return str(target)
    if client is None:
        try:
            import boto3  # optional: only stacks with s3:// adapters need it
        except ImportError as exc:
            raise ArtifactError(
                f"adapter {name!r} comes from {uri} but boto3 is not installed; install it with: pip install boto3"
            ) from exc
        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    tmp = artifact_dir / f".{name}.partial"
    tmp.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                if not rel or rel.endswith("/"):
                    continue
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj["Key"], str(dest))
                count += 1
    except Exception as exc:  # boto3 raises many types; all mean "not available now"
        raise ArtifactError(f"adapter {name!r}: downloading {uri} failed: {exc}") from exc
    if count == 0:
        raise ArtifactError(f"adapter {name!r}: {uri} holds no objects")
    (tmp / ".complete").write_text(uri)
    if target.exists():
        for path in sorted(target.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        target.rmdir()
    tmp.rename(target)
    return str(target)
