"""Turn an adapter's declared URI into the ``lora_path`` the engine loads.

- ``hf://org/repo[@revision]`` -> ``org/repo``: vLLM resolves Hugging Face repo ids itself
  and authenticates with ``HF_TOKEN`` from the engine's environment (a Secret reference).
- ``file:///path`` -> ``/path``: a volume mounted into the engine container.
- ``s3://``, ``gs://``, ``https://``, ``oci://`` -> ``artifact_dir/<adapter>``, published there
  by the runtime's downloader (``aibrix-runtime download``, the same console script the model
  init container runs, in this image) as a subprocess: one implementation of ranged reads,
  resume, checksums and atomic publish for base models and adapters alike. The directory is
  shared with the engine container.

Credentials: ``s3://`` reads the ``AWS_*`` variables; ``gs://`` reads HMAC keys from
``AIBRIX_GS_ACCESS_KEY_ID`` / ``AIBRIX_GS_SECRET_ACCESS_KEY`` (its own Secret, so a model may
take adapters from AWS and from Cloud Storage), handed to the downloader as ``AWS_*``;
``https://`` a token file, ``oci://`` a Docker config folder, both named per adapter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DOWNLOADED", "EXIT_MEANINGS", "ArtifactError", "Downloader", "FetchOptions", "resolve_lora_path"]

#: Schemes the downloader fetches into ``artifact_dir``.
DOWNLOADED = ("s3://", "gs://", "https://", "oci://")
#: ``aibrix-runtime download`` exit codes (docs/runtime.md), as words for the status report.
EXIT_MEANINGS = {1: "usage", 2: "not found", 3: "access denied", 4: "checksum mismatch", 5: "network or other failure"}
_GS_KEYS = {"AIBRIX_GS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AIBRIX_GS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
_STDERR_TAIL = 2000  # bytes of the downloader's stderr kept in an error (its error block is last)


class ArtifactError(Exception):
    """The adapter's weights could not be made available to the engine."""

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class FetchOptions:
    """Per-adapter downloader settings from the sidecar config."""

    endpoint: str | None = None  #: S3-compatible endpoint (s3://, gs://)
    token_file: str | None = None  #: bearer token file (https://)
    docker_config: str | None = None  #: folder holding config.json (oci://)
    timeout_s: float = 3600.0  #: the whole download; a killed one resumes on the next pass


class Downloader:
    """Runs ``aibrix-runtime download`` once per (adapter, uri): later passes reuse the result
    without starting a process (the folder is the sidecar's own emptyDir). A restarted sidecar
    asks the downloader again, which finds its completion marker and returns at once."""

    def __init__(self, artifact_dir: str, *, command: tuple[str, ...] = ("aibrix-runtime",)) -> None:
        self.artifact_dir = Path(artifact_dir)
        self.command = command
        self._done: dict[str, str] = {}  # adapter -> uri published at artifact_dir/<adapter>
        self._lock = threading.Lock()

    def fetch(self, name: str, uri: str, options: FetchOptions = FetchOptions()) -> str:
        target = self.artifact_dir / name
        with self._lock:
            if self._done.get(name) == uri and target.is_dir():
                return str(target)
        exe = shutil.which(self.command[0])
        if exe is None:
            raise ArtifactError(
                f"adapter {name!r} comes from {uri} but the downloader {self.command[0]!r} is not on PATH; "
                "install it in the sidecar image with: pip install 'aibrix-stack[sidecar]'"
            )
        argv = [exe, *self.command[1:], "download", uri, "--dest", str(target), "--progress-interval", "0"]
        if options.endpoint and uri.startswith(("s3://", "gs://")):
            argv += ["--endpoint", options.endpoint]
        if options.token_file and uri.startswith("https://"):
            argv += ["--token-file", options.token_file]
        try:
            done = subprocess.run(argv, env=_env(uri, options), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=options.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ArtifactError(
                f"adapter {name!r}: downloading {uri} took longer than {options.timeout_s:g}s; "
                "the next pass resumes where it stopped"
            ) from exc
        except OSError as exc:
            raise ArtifactError(f"adapter {name!r}: cannot run the downloader {exe}: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            raise ArtifactError(_message(name, uri, done.returncode, done.stderr), exit_code=done.returncode)
        with self._lock:
            self._done[name] = uri
        return str(target)


def _env(uri: str, options: FetchOptions) -> dict[str, str]:
    """The downloader's environment: only the credentials of this adapter's source kind."""
    env = {k: v for k, v in os.environ.items() if k not in _GS_KEYS and k != "DOCKER_CONFIG"}
    if uri.startswith("gs://"):
        # Nothing of the AWS identity (keys, IRSA, region, endpoint) is sent to Cloud Storage.
        env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        env |= {aws: os.environ[gs] for gs, aws in _GS_KEYS.items() if os.environ.get(gs)}
        env["AWS_EC2_METADATA_DISABLED"] = "true"
    if uri.startswith("oci://") and options.docker_config:
        env["DOCKER_CONFIG"] = options.docker_config
    return env


def _message(name: str, uri: str, code: int, stderr: bytes) -> str:
    """The downloader's own error block (``error: ...`` with its expected/hint lines)."""
    text = stderr.decode("utf-8", "replace")[-_STDERR_TAIL:]
    lines = text.splitlines()
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("error:")), None)
    detail = " ".join(line.strip() for line in lines[start:]) if start is not None else (lines[-1].strip() if lines else "")
    meaning = EXIT_MEANINGS.get(code, "signal" if code < 0 else "failure")
    return f"adapter {name!r}: downloading {uri} failed ({meaning}, exit {code}): {detail or 'no message'}"


def resolve_lora_path(name: str, uri: str, downloader: Downloader, options: FetchOptions = FetchOptions()) -> str:
    if uri.startswith("hf://"):
        return uri[len("hf://") :].split("@", 1)[0]
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith(DOWNLOADED):
        return downloader.fetch(name, uri, options)
    raise ArtifactError(
        f"adapter {name!r}: unsupported uri {uri!r}; expected hf://, file://, s3://, gs://, https:// or oci://"
    )
