"""Config of the engine sidecar (``runtime_components/sidecar``), mounted from a ConfigMap
the compiler writes for each model with adapters.

Credentials never appear here: the engine and sidecar containers get them from the Secrets
the stack references, as environment variables (``HF_TOKEN`` for ``hf://`` in the engine;
``AWS_*`` for ``s3://``, ``AIBRIX_GS_*`` for ``gs://`` in the sidecar) or as mounted files
whose paths an adapter names (``tokenFile`` for ``https://``, ``dockerConfig`` for ``oci://``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from .._base import SpecModel

__all__ = ["SidecarAdapter", "SidecarConfig", "PodSource", "RetrySettings"]

_URI = re.compile(
    r"^(hf://[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(@[A-Za-z0-9._/-]+)?|s3://[a-z0-9.-]+(/[^\s]*)?|gs://[a-z0-9._-]+(/[^\s]*)?"
    r"|https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[^\s]*|oci://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[^\s]+|file:///[^\s]*)$"
)
_EXPECTED = (
    "hf://org/repo[@revision], s3://bucket/prefix, gs://bucket/prefix, https://host/path, "
    "oci://registry/repo:tag or file:///path"
)
_ABS_PATH = re.compile(r"^/[^\s]*$")


class SidecarAdapter(SpecModel):
    """One declared adapter."""

    name: str = Field(description="The adapter's OpenAI model name.")
    uri: str = Field(description=f"Where its weights are: {_EXPECTED}.")
    replicas: Annotated[int, Field(ge=1)] = Field(1, description="How many of the model's pods hold it.")
    endpoint: Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")] | None = Field(
        None, description="S3-compatible endpoint for s3:// and gs:// (gs:// needs Cloud Storage's XML API)."
    )
    token_file: Annotated[str, Field(pattern=_ABS_PATH.pattern)] | None = Field(
        None, description="For https://: a mounted file holding a bearer token."
    )
    docker_config: Annotated[str, Field(pattern=_ABS_PATH.pattern)] | None = Field(
        None, description="For oci://: a mounted folder holding config.json (registry credentials)."
    )

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        if not _URI.match(value):
            raise ValueError(f"unsupported adapter uri {value!r}; expected {_EXPECTED}")
        return value


class PodSource(SpecModel):
    """Where the sidecar learns the model's ready pods."""

    kind: Literal["kubernetes", "static"] = Field(
        "kubernetes", description="Kubernetes API (list pods by label) or a static file."
    )
    namespace: str | None = Field(None, description="Namespace of the pods (default: the sidecar's own).")
    label_selector: str = Field(
        "", description="Label selector of the model's engine pods, e.g. model.aibrix.ai/name=llama-3-8b."
    )
    static_file: str | None = Field(None, description="For kind static: a JSON file {\"pods\": [names]} re-read every pass.")


class RetrySettings(SpecModel):
    """Backoff for failed loads."""

    base_delay_seconds: Annotated[float, Field(gt=0)] = Field(1.0, description="Delay after the first failure.")
    max_delay_seconds: Annotated[float, Field(gt=0)] = Field(60.0, description="Cap of the exponential backoff.")
    max_attempts: Annotated[int, Field(ge=1)] = Field(
        5, description="Rejected loads are given up (and reported) after this many attempts."
    )


class SidecarConfig(SpecModel):
    """The whole sidecar config file."""

    model: str = Field(description="The base model's served name.")
    max_loras: Annotated[int, Field(ge=1)] = Field(description="Adapters one engine may hold at once (vLLM --max-loras).")
    adapters: list[SidecarAdapter] = Field(default_factory=list, description="Declared adapters.")
    pods: PodSource = Field(default_factory=PodSource, description="Where the ready-pod set comes from.")
    resync_seconds: Annotated[float, Field(gt=0)] = Field(10.0, description="Seconds between reconcile passes.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Backoff for failed loads.")
    artifact_dir: str = Field(
        "/adapters",
        description="Where s3://, gs://, https:// and oci:// adapters are downloaded (a volume shared with the engine).",
    )
    download_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        3600.0, description="Longest one adapter download may run; a stopped one resumes on the next pass."
    )
