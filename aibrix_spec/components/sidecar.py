"""Config of the engine sidecar (``runtime_components/sidecar``), mounted from a ConfigMap
the compiler writes for each model with adapters.

Credentials never appear here: the engine container gets them as environment variables
from the Secrets the stack references (``HF_TOKEN`` for ``hf://``, ``AWS_*`` for ``s3://``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from .._base import SpecModel

__all__ = ["SidecarAdapter", "SidecarConfig", "PodSource", "RetrySettings"]

_URI = re.compile(r"^(hf://[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(@[A-Za-z0-9._/-]+)?|s3://[a-z0-9.-]+(/[^\s]*)?|file:///[^\s]*)$")


class SidecarAdapter(SpecModel):
    """One declared adapter."""

    name: str = Field(description="The adapter's OpenAI model name.")
    uri: str = Field(description="Where its weights are: hf://org/repo[@revision], s3://bucket/prefix or file:///mounted/path.")
    replicas: Annotated[int, Field(ge=1)] = Field(1, description="How many of the model's pods hold it.")

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        if not _URI.match(value):
            raise ValueError(
                f"unsupported adapter uri {value!r}; expected hf://org/repo[@revision], s3://bucket/prefix or file:///path"
            )
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
    artifact_dir: str = Field("/adapters", description="Where s3:// artifacts are downloaded (a volume shared with the engine).")
