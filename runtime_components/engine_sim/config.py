"""Engine configuration, request and result records, and the errors the engine raises.

Where it sits: the vocabulary shared by ``core.EngineCore`` (the stepped engine), ``des``
(the discrete-event simulator), the HTTP server and the benchmarks. Field names follow
vLLM's engine arguments (``max_num_batched_tokens``, ``max_num_seqs``, ``block_size``,
``enable_prefix_caching``, ``max_loras``, ``max_model_len``, ``gpu_memory_utilization``).

Error hierarchy::

    EngineError
     +-- RequestRejected        the request can never run here (too long, bad field)
     +-- UnknownAdapterError    the request names an adapter that is not loaded
     +-- AdapterError           load/unload refused (limit reached, already loaded)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from aibrix_spec.catalog import ACCELERATORS, MODEL_ARCHS

__all__ = [
    "EngineConfig",
    "SimRequest",
    "TokenEvent",
    "StepResult",
    "ExternalKVStore",
    "EngineError",
    "RequestRejected",
    "UnknownAdapterError",
    "AdapterError",
    "prefix_salt",
]


class EngineError(Exception):
    """Base of every error the simulated engine raises on purpose."""


class RequestRejected(EngineError):
    """The request cannot be served by this engine (HTTP 400)."""


class UnknownAdapterError(EngineError):
    """The request or unload call names an adapter that is not loaded (HTTP 404)."""


class AdapterError(EngineError):
    """An adapter load was refused (HTTP 400): limit reached or already loaded."""


def prefix_salt(model: str, adapter: str | None) -> str:
    """The block-hash salt of a request: the model, plus the adapter when one is used."""
    return model if adapter is None else f"{model}+{adapter}"


@dataclass(frozen=True)
class EngineConfig:
    """One simulated vLLM engine: the GPU, the model and vLLM's scheduler arguments."""

    accelerator: str = "nvidia-a100-80gb"  #: a key of ``aibrix_spec.catalog.ACCELERATORS``
    model_arch: str = "llama-3-8b"  #: a key of ``aibrix_spec.catalog.MODEL_ARCHS``
    served_model_name: str = ""  #: the OpenAI ``model`` name; defaults to ``model_arch``
    tensor_parallel: int = 1
    max_num_batched_tokens: int = 2048  #: per-step token budget (chunked prefill)
    max_num_seqs: int = 256  #: most sequences running at once
    max_model_len: int = 8192  #: longest prompt + output
    block_size: int = 16
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.9
    num_gpu_blocks: int | None = None  #: override the roofline's KV capacity (small caches in tests)
    max_loras: int = 4  #: most adapters loaded at once
    lora_load_s: float = 0.5  #: simulated seconds a runtime adapter load takes
    #: vLLM's --scheduling-policy: fcfs, or priority (each request's ``priority``, lower first)
    scheduling_policy: str = "fcfs"

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(
                f"EngineConfig.accelerator: unknown accelerator {self.accelerator!r}; "
                f"expected one of {', '.join(sorted(ACCELERATORS))}"
            )
        if self.model_arch not in MODEL_ARCHS:
            raise ValueError(
                f"EngineConfig.model_arch: unknown model {self.model_arch!r}; "
                f"expected one of {', '.join(sorted(MODEL_ARCHS))}"
            )
        if not self.served_model_name:
            object.__setattr__(self, "served_model_name", self.model_arch)
        positive = ("tensor_parallel", "max_num_batched_tokens", "max_num_seqs", "max_model_len", "block_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"EngineConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.scheduling_policy not in ("fcfs", "priority"):
            raise ValueError(f"EngineConfig.scheduling_policy must be fcfs or priority, got {self.scheduling_policy!r}")
        if self.max_loras < 0 or self.lora_load_s < 0:
            raise ValueError("EngineConfig.max_loras and lora_load_s must be >= 0")
        if self.num_gpu_blocks is not None and self.num_gpu_blocks < 1:
            raise ValueError(f"EngineConfig.num_gpu_blocks must be >= 1 when set, got {self.num_gpu_blocks}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(
                f"EngineConfig.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )


@dataclass(frozen=True)
class SimRequest:
    """One generation request as the engine sees it (token ids, not text)."""

    request_id: str
    prompt_token_ids: Sequence[int]
    max_tokens: int
    arrival_s: float
    adapter: str | None = None
    salt: str = ""  #: block-hash salt; empty means ``prefix_salt(served model, adapter)``
    session_id: str | None = None  #: routing hint only (session affinity); the engine ignores it
    priority: int = 0  #: vLLM's request priority (lower first); used under scheduling_policy priority
    #: prefill/decode: leading prompt tokens whose KV a prefill engine computed and sent here
    #: (already arrived: the transfer's time is spent before the request is added). The engine
    #: allocates their blocks and computes only the rest, like vLLM's decode side of a
    #: NixlConnector pair (it recomputes the prompt's last token to sample the first output).
    kv_transferred_tokens: int = 0


class TokenEvent(NamedTuple):
    """A token produced at the end of a step; ``index`` 0 is the first token.

    A named tuple, not a frozen dataclass: one is built per generated token, and a frozen
    dataclass's ``__init__`` (a ``object.__setattr__`` per field) was 7 % of a simulation."""

    request_id: str
    index: int
    finished: bool = False
    finish_reason: str | None = None  #: "length" when finished
    cached_tokens: int = 0  #: prompt tokens served from a prefix cache (set on index 0)


@dataclass(frozen=True)
class StepResult:
    """What one engine step did. Events happen at ``start_s + duration_s``."""

    start_s: float
    duration_s: float
    events: tuple[TokenEvent, ...] = ()
    prefill_tokens: int = 0
    decode_seqs: int = 0
    preempted: tuple[str, ...] = ()
    external_transfer_s: float = 0.0
    scheduled: tuple[str, ...] = field(default=())

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@runtime_checkable
class ExternalKVStore(Protocol):
    """A KV store outside the engine (the kv pool): blocks keyed by chained block hashes."""

    def lookup(self, block_hashes: Sequence[int]) -> int:
        """How many *leading* blocks of ``block_hashes`` the store holds."""
        ...

    def store(self, block_hashes: Sequence[int]) -> None:
        """Record that these freshly computed blocks are now stored."""
        ...

    def transfer_seconds(self, n_blocks: int) -> float:
        """Simulated seconds to load ``n_blocks`` blocks into the engine.

        A store may also define ``load_stages`` (int, default 1): how many layer groups it
        loads one after the other while the forward pass runs (see ``core``)."""
        ...
