"""Roofline performance model: how long one continuous-batching engine step takes.

Where it sits: ``EngineCore`` (``core.py``) composes a step (prefill chunks plus decoding
sequences) and asks this model for its duration; the discrete-event simulator, the HTTP
server and the optimizer's roofline-derived profiles all read the same numbers. Pure
arithmetic over the catalogues in ``aibrix_spec.catalog``: no clock, no I/O.

Formulas (per GPU; tensor parallelism ``tp`` splits weights, heads and KV across GPUs):

- Linear FLOPs: ``2 * body_params * tokens`` for every token in the step, plus the LM head
  ``2 * hidden * vocab`` for each *sampled* position only (vLLM computes logits for the
  last token of each sequence). ``body_params = params - 2 * vocab * hidden``.
- Attention FLOPs of a prefill chunk of ``n`` tokens after ``c`` cached ones:
  ``4 * layers * hidden * (n * c + n * (n + 1) / 2)`` (QK^T and AV); of a decode token with
  context ``k``: ``4 * layers * hidden * k``.
- Bytes read: all weights once per step, plus the KV cache of every context token attended
  to (``kv_bytes_per_token`` each: decode contexts and prefill chunks' cached prefixes).
- ``compute_s = flops / tp / (peak_bf16 * compute_eff)``;
  ``memory_s = bytes / tp / (bandwidth * memory_eff)``.
- Step time ``= overhead + max(compute_s, memory_s) + allreduce_s``. The max, not the sum:
  the batch runs as one fused forward pass in which the GEMMs stream the weights while they
  compute, so the slower resource bounds the step (a decode-only step is memory-bound, a
  large prefill compute-bound, a mixed chunked-prefill step sits on whichever dominates).
  ``overhead`` is the per-step CPU work (scheduling, sampling, kernel launches) that vLLM
  does not hide. With ``tp > 1`` each layer does two all-reduces of ``tokens * hidden``
  bf16 values: ``allreduce_s = 2 * layers * (latency + 2 (tp-1)/tp * bytes / link_bw)``.
- KV capacity: ``(memory * utilization - weights/tp - reserve) * tp / (kv_bytes_per_token *
  block_size)`` blocks, the reserve standing for activations, CUDA graphs and the
  non-torch allocations vLLM's profiler subtracts.

Calibration: the efficiency factors in ``DEFAULT_EFFICIENCY`` were fitted (a grid search
minimising the maximum relative error) against the published vLLM measurements that
``calibration.py`` marks as the fit set: decode latency of Llama-3.1-8B on A100-40GB, H100 and
H200, of Llama-3-70B with TP 4 on H200 and of Qwen2.5-0.5B on L4 (which pins the per-step
overhead), and batched-prefill TTFT of Llama-3-8B / 70B on A100 and H100 (which pin the
compute efficiency and ``request_overhead_s``). Other published TTFT points are held out and
reported separately. Without ``request_overhead_s`` the roofline alone under-predicts small-model
TTFT by up to 55% (a fixed ~25 ms of the client-measured TTFT is not GPU time).
``calibration.calibration_report`` recomputes the error of every point; the benchmark
``benchmarks.engine_sim`` prints it, in-sample and held-out apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aibrix_spec.catalog import AcceleratorSpec, ModelArch

__all__ = ["Efficiency", "DEFAULT_EFFICIENCY", "PrefillChunk", "StepCost", "RooflineModel"]

_GIB = 1024**3


@dataclass(frozen=True)
class Efficiency:
    """Calibrated fractions of the hardware peaks a real vLLM step reaches."""

    compute: float = 0.60  #: fraction of dense BF16 peak reached by prefill GEMMs + attention
    memory: float = 0.82  #: fraction of memory bandwidth reached by decode weight/KV streaming
    step_overhead_s: float = 0.0015  #: unhidden CPU time per step (schedule, sample, launch)
    allreduce_latency_s: float = 25e-6  #: fixed cost of one small tensor-parallel all-reduce
    link_bandwidth_gbs: float = 150.0  #: effective per-GPU all-reduce bandwidth (NVLink class)
    reserve_gib: float = 1.5  #: per-GPU memory vLLM keeps out of the KV cache (activations, graphs)
    #: Client-visible time a served request spends outside the GPU before its first token
    #: (HTTP, tokenization, hand-off to the scheduler, detokenization, streaming back). Not GPU
    #: time: the simulator delivers a request to its engine this long after it arrives. Fitted
    #: on published TTFT measurements (``calibration.py``); offline ``LLM`` runs do not pay it.
    request_overhead_s: float = 0.025

    def __post_init__(self) -> None:
        for name in ("compute", "memory"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"Efficiency.{name} must be in (0, 1], got {value}")
        for name in ("step_overhead_s", "allreduce_latency_s", "reserve_gib", "request_overhead_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"Efficiency.{name} must be >= 0, got {getattr(self, name)}")
        if self.link_bandwidth_gbs <= 0:
            raise ValueError(f"Efficiency.link_bandwidth_gbs must be > 0, got {self.link_bandwidth_gbs}")


DEFAULT_EFFICIENCY = Efficiency()


@dataclass(frozen=True)
class PrefillChunk:
    """``n_tokens`` prompt tokens computed in this step after ``context_tokens`` already in KV."""

    n_tokens: int
    context_tokens: int = 0
    samples: bool = True  #: whether the chunk ends the prompt (so a first token is sampled)


@dataclass(frozen=True)
class StepCost:
    """The parts of one step's duration, in seconds."""

    compute_s: float
    memory_s: float
    allreduce_s: float
    overhead_s: float

    @property
    def total_s(self) -> float:
        return self.overhead_s + max(self.compute_s, self.memory_s) + self.allreduce_s

    @property
    def bound(self) -> str:
        """Which roofline side limits the step: ``"compute"`` or ``"memory"``."""
        return "compute" if self.compute_s >= self.memory_s else "memory"


class RooflineModel:
    """Step durations and KV capacity of one model replica on ``tensor_parallel`` GPUs.

    >>> from aibrix_spec.catalog import accelerator, model_arch
    >>> m = RooflineModel(accelerator("nvidia-h100"), model_arch("llama-3-8b"))
    >>> 0.004 < m.decode_step_seconds(batch=1, kv_tokens=512) < 0.009
    True
    """

    def __init__(
        self,
        accelerator: AcceleratorSpec,
        arch: ModelArch,
        tensor_parallel: int = 1,
        efficiency: Efficiency = DEFAULT_EFFICIENCY,
    ) -> None:
        if tensor_parallel < 1:
            raise ValueError(f"tensor_parallel must be >= 1, got {tensor_parallel}")
        if arch.kv_heads % tensor_parallel and tensor_parallel % arch.kv_heads:
            raise ValueError(
                f"tensor_parallel={tensor_parallel} does not divide {arch.name}'s {arch.kv_heads} KV heads"
            )
        self.accelerator = accelerator
        self.arch = arch
        self.tensor_parallel = tensor_parallel
        self.efficiency = efficiency
        embed_params = arch.vocab_size * arch.hidden_size
        self._body_params = max(arch.params_b * 1e9 - 2 * embed_params, 0.5 * arch.params_b * 1e9)
        self._lm_head_flops = 2.0 * embed_params
        self._attn_flops_per_ctx = 4.0 * arch.layers * arch.hidden_size
        self._flops_per_s = accelerator.bf16_tflops * 1e12 * efficiency.compute * tensor_parallel
        self._bytes_per_s = accelerator.memory_bandwidth_gbs * 1e9 * efficiency.memory * tensor_parallel

    # -- step composition -> cost -------------------------------------------------------

    def step_cost(
        self,
        prefill: Sequence[PrefillChunk] = (),
        decode_seqs: int = 0,
        decode_kv_tokens: int = 0,
    ) -> StepCost:
        """Cost of one step: ``prefill`` chunks plus ``decode_seqs`` sequences decoding one
        token each, attending to ``decode_kv_tokens`` context tokens in total."""
        if decode_seqs < 0 or decode_kv_tokens < 0:
            raise ValueError("decode_seqs and decode_kv_tokens must be >= 0")
        tokens = decode_seqs
        sampled = decode_seqs
        attn_ctx = float(decode_kv_tokens)
        kv_read_tokens = decode_kv_tokens
        for chunk in prefill:
            n, c = chunk.n_tokens, chunk.context_tokens
            if n < 0 or c < 0:
                raise ValueError(f"prefill chunk sizes must be >= 0, got {chunk}")
            tokens += n
            sampled += 1 if chunk.samples else 0
            attn_ctx += n * c + n * (n + 1) / 2.0
            kv_read_tokens += c
        if tokens == 0:
            return StepCost(0.0, 0.0, 0.0, 0.0)
        flops = 2.0 * self._body_params * tokens + self._lm_head_flops * sampled + self._attn_flops_per_ctx * attn_ctx
        bytes_read = self.arch.weight_bytes + kv_read_tokens * self.arch.kv_bytes_per_token
        return StepCost(
            compute_s=flops / self._flops_per_s,
            memory_s=bytes_read / self._bytes_per_s,
            allreduce_s=self._allreduce_seconds(tokens),
            overhead_s=self.efficiency.step_overhead_s,
        )

    def step_seconds(
        self,
        prefill: Sequence[PrefillChunk] = (),
        decode_seqs: int = 0,
        decode_kv_tokens: int = 0,
    ) -> float:
        """Duration of one step (see ``step_cost``)."""
        return self.step_cost(prefill, decode_seqs, decode_kv_tokens).total_s

    def prefill_seconds(self, n_tokens: int, context_tokens: int = 0) -> float:
        """Duration of a step that only prefills one chunk."""
        return self.step_seconds([PrefillChunk(n_tokens, context_tokens)])

    def decode_step_seconds(self, batch: int, kv_tokens: int) -> float:
        """Duration of a decode-only step of ``batch`` sequences with ``kv_tokens`` context in total."""
        return self.step_seconds((), batch, kv_tokens)

    def _allreduce_seconds(self, tokens: int) -> float:
        tp = self.tensor_parallel
        if tp == 1:
            return 0.0
        payload = tokens * self.arch.hidden_size * 2.0 * 2.0 * (tp - 1) / tp
        per_reduce = self.efficiency.allreduce_latency_s + payload / (self.efficiency.link_bandwidth_gbs * 1e9)
        return 2 * self.arch.layers * per_reduce

    # -- memory ------------------------------------------------------------------------

    def kv_capacity_blocks(self, block_size: int = 16, gpu_memory_utilization: float = 0.9) -> int:
        """How many KV blocks of ``block_size`` tokens fit next to the weights."""
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if not 0.0 < gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        tp = self.tensor_parallel
        per_gpu_budget = self.accelerator.memory_gib * _GIB * gpu_memory_utilization
        per_gpu_free = per_gpu_budget - self.arch.weight_bytes / tp - self.efficiency.reserve_gib * _GIB
        if per_gpu_free <= 0:
            raise ValueError(
                f"{self.arch.name} ({self.arch.weight_bytes / 1e9:.1f} GB of weights) does not fit on "
                f"{tp} x {self.accelerator.name} ({self.accelerator.memory_gib:g} GiB, utilization "
                f"{gpu_memory_utilization}); hint: raise tensor_parallel or pick a larger GPU"
            )
        return int(per_gpu_free * tp // (self.arch.kv_bytes_per_token * block_size))
