"""Catalogues of accelerators and model architectures: one source of truth.

The compiler reads the accelerator catalogue (memory, default price) to validate pools
and estimate cost; the simulated engine and the optimizer read both to derive step
times from a roofline model. Numbers are vendors' dense (non-sparse) BF16 peaks and
published memory bandwidths; prices are typical on-demand cloud prices per GPU-hour in
USD and are only defaults: a pool's ``costPerGpuHour`` overrides them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AcceleratorSpec", "ModelArch", "ACCELERATORS", "MODEL_ARCHS", "accelerator", "arch_from_source", "model_arch"]


@dataclass(frozen=True)
class AcceleratorSpec:
    """One GPU type."""

    name: str  #: catalogue key, as written in a pool's ``accelerator``
    product: str  #: the value of the ``nvidia.com/gpu.product`` node label
    bf16_tflops: float  #: dense BF16 tensor-core peak, TFLOP/s
    memory_bandwidth_gbs: float  #: HBM/GDDR bandwidth, GB/s
    memory_gib: float  #: device memory, GiB
    price_per_hour: float  #: default USD per GPU-hour
    resource_name: str = "nvidia.com/gpu"  #: the extended resource a pod requests


@dataclass(frozen=True)
class ModelArch:
    """The architecture facts a roofline model needs (decoder-only transformer)."""

    name: str
    params_b: float  #: parameters, billions
    layers: int
    hidden_size: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    bytes_per_param: int = 2  #: bf16 weights

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V cache one token occupies across all layers (bf16)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * 2

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * self.bytes_per_param


ACCELERATORS: dict[str, AcceleratorSpec] = {
    a.name: a
    for a in (
        AcceleratorSpec("nvidia-a10", "NVIDIA-A10", 125.0, 600.0, 24.0, 0.75),
        AcceleratorSpec("nvidia-l4", "NVIDIA-L4", 121.0, 300.0, 24.0, 0.70),
        AcceleratorSpec("nvidia-l20", "NVIDIA-L20", 119.5, 864.0, 48.0, 1.10),
        AcceleratorSpec("nvidia-a100-80gb", "NVIDIA-A100-SXM4-80GB", 312.0, 2039.0, 80.0, 1.90),
        AcceleratorSpec("nvidia-h100", "NVIDIA-H100-80GB-HBM3", 989.0, 3350.0, 80.0, 3.00),
        AcceleratorSpec("nvidia-h200", "NVIDIA-H200", 989.0, 4800.0, 141.0, 3.80),
    )
}

MODEL_ARCHS: dict[str, ModelArch] = {
    m.name: m
    for m in (
        ModelArch("llama-3-8b", 8.03, 32, 4096, 8, 128, 128256),
        ModelArch("qwen2.5-7b", 7.62, 28, 3584, 4, 128, 152064),
        ModelArch("deepseek-coder-6.7b", 6.74, 32, 4096, 32, 128, 32256),
        ModelArch("llama-3-70b", 70.6, 80, 8192, 8, 128, 128256),
    )
}


#: Well-known weight names (the last component of a source URI, lowercased) -> architecture.
_SOURCE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(meta-)?llama-3(\.[0-9])?-8b(-instruct)?$"), "llama-3-8b"),
    (re.compile(r"^(meta-)?llama-3(\.[0-9])?-70b(-instruct)?$"), "llama-3-70b"),
    (re.compile(r"^qwen2\.5-7b(-instruct)?$"), "qwen2.5-7b"),
    (re.compile(r"^deepseek-coder-6\.7b(-instruct|-base)?$"), "deepseek-coder-6.7b"),
)


def arch_from_source(uri: str) -> str | None:
    """The architecture a well-known source URI names, when exactly one matches.

    >>> arch_from_source("hf://Qwen/Qwen2.5-7B-Instruct"), arch_from_source("s3://b/my-model")
    ('qwen2.5-7b', None)
    """
    tail = uri.rstrip("/").rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0].lower()
    found = {arch for pattern, arch in _SOURCE_PATTERNS if pattern.match(tail)}
    return found.pop() if len(found) == 1 else None


def accelerator(name: str) -> AcceleratorSpec:
    """Look up an accelerator; KeyError names the known ones."""
    try:
        return ACCELERATORS[name]
    except KeyError:
        raise KeyError(f"unknown accelerator {name!r}; known: {', '.join(sorted(ACCELERATORS))}") from None


def replica_bandwidth_gbs(name: str, tensor_parallel: int) -> float:
    """Memory bandwidth of one replica on ``tensor_parallel`` GPUs of accelerator ``name``: what
    bounds its decoding speed (a decode step streams weights and KV from every GPU at once)."""
    return accelerator(name).memory_bandwidth_gbs * tensor_parallel


def model_arch(name: str) -> ModelArch:
    """Look up a model architecture; KeyError names the known ones."""
    try:
        return MODEL_ARCHS[name]
    except KeyError:
        raise KeyError(f"unknown model architecture {name!r}; known: {', '.join(sorted(MODEL_ARCHS))}") from None
