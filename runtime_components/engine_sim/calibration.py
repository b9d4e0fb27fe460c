"""Published vLLM measurements the roofline model is calibrated against, and its error.

Where it sits: ``perf.DEFAULT_EFFICIENCY`` holds the fitted factors; this module restates
each published measurement as a step schedule, predicts it with ``RooflineModel`` and
reports the relative error ``|predicted - measured| / measured``. The benchmark
``benchmarks.engine_sim`` prints the table and the maximum error; a test pins it below 25%.

How a measurement becomes a prediction:

- ``decode_itl``: one decode step of ``batch`` sequences, each with ``context`` tokens of KV
  (inter-token latency at steady state).
- ``batch_e2e`` (vLLM's ``benchmark_latency``: ``batch`` prompts of ``input_len`` tokens,
  ``output_len`` tokens each, all submitted at once): one prefill step of ``batch *
  input_len`` tokens (it fits the default token budget) yielding the first tokens, then
  ``output_len - 1`` decode steps whose context grows by one token per step. An offline ``LLM``
  run: no serving path, so no ``request_overhead_s``.
- ``batch_ttft`` (vLLM's ``benchmark_serving`` with every prompt sent at once): one prefill step
  of all ``prompt_lens`` plus ``request_overhead_s`` (HTTP, tokenization, streaming back).

Sources (all BF16, vLLM's V1 engine unless noted):

1. johnmusgrave.com, "vLLM throughput-latency sweep on NVIDIA A100": Llama-3.1-8B-Instruct,
   A100-SXM 40GB, vLLM 0.23.0, 1024-token input, 128-token output, concurrency 1: about 75
   output tokens/s, i.e. 13.3 ms per token.
2. yobitelcomm.github.io InferenceBench "concurrency sweep" recipe: Llama-3.1-8B-Instruct,
   H100-80GB-HBM3, vLLM 0.21.0, chatbot-short prompts, concurrency 1: TPOT p50 6.48 ms.
3. vLLM nightly performance benchmark (buildkite vllm/performance-benchmark, build 9515),
   latency test ``latency_llama8B_tp1`` on H200: input 32, output 128, batch 8: mean
   833.42 ms end to end.
4. Same page, ``latency_llama70B_tp4`` on 4 x H200: mean 2077.53 ms.
5. ai.wmx.dev serving benchmark: Qwen2.5-0.5B-Instruct on one L4, vLLM 0.23.0, 256-token
   input, concurrency 1: ITL p50 5.1 ms (a small model: checks the per-step overhead).

Prefill (TTFT) points, ``batch_ttft``: the ten ShareGPT prompts of vLLM's
``benchmark_serving.py`` (input lengths 13, 25, 27, 10, 329, 29, 399, 328, 4, 205: 1369 tokens
with the Llama-3 tokenizer) sent at once (``request_rate: inf``) to a vLLM OpenAI server, BF16,
``max-model-len`` 2048. All ten are admitted to one prefill step (the files' per-request TTFTs
differ by under 1 ms), so the TTFT is one batched-prefill step plus the serving path's
``request_overhead_s``. Source: GitHub LambdaLabsML/vllm-benchmark, files
``results/prompt_10/<N>x<GPU>/Meta-Llama-3-<size>-Instruct_tp<N>_len2048.json`` (field
``mean_ttft_ms``; ``median_ttft_ms`` for the 70B files, whose mean counts two requests that
returned no token as 0 ms), dated 2024-09-07/08; their inter-token gaps of about ten decode steps
match the vLLM v0.6.0 ``num-scheduler-steps=10`` runs the repository's ``benchmark_v0.md``
describes. SXM parts: A100-SXM4-80GB and H100-SXM5-80GB.

6. A100-80GB, Llama-3-8B, TP 1: 126.87 ms (file dated 20240908-071536).
7. H100-80GB, Llama-3-8B, TP 1: 62.43 ms (20240907-082731).
8. 2 x H100-80GB, Llama-3-8B, TP 2: 53.59 ms (20240907-092217).
9. 2 x A100-80GB, Llama-3-70B, TP 2: 506.39 ms median (20240908-081524).
10. 2 x A100-80GB, Llama-3-8B, TP 2: 98.64 ms (20240908-075914). Held out.
11. 2 x H100-80GB, Llama-3-70B, TP 2: 218.92 ms median (20240907-092435). Held out.
12. 4 x H100-80GB, Llama-3-70B, TP 4: 140.56 ms median (20240907-105921). Held out.

Fit and held-out sets: ``DEFAULT_EFFICIENCY`` was fitted on points 1-9 only (``fit=True``);
points 10-12 were chosen as held out before fitting (each is an accelerator/model/TP combination
the fit never saw) and are reported separately (``heldout_max_error``). They are few and come
from one publisher and one prompt set, so the held-out error says the model generalises across
hardware and parallelism for this batch shape, not for every prompt mix.

The A100-40GB and Qwen2.5-0.5B are not in the shared catalogue (no stack deploys them); their
published specifications are given here for the calibration only.
"""

from __future__ import annotations

from dataclasses import dataclass

from aibrix_spec.catalog import AcceleratorSpec, ModelArch, accelerator, model_arch

from .perf import DEFAULT_EFFICIENCY, Efficiency, PrefillChunk, RooflineModel

__all__ = [
    "PublishedMeasurement",
    "CalibrationPoint",
    "PUBLISHED_MEASUREMENTS",
    "calibration_report",
    "heldout_max_error",
    "max_error",
]

_A100_40GB = AcceleratorSpec("nvidia-a100-40gb", "NVIDIA-A100-SXM4-40GB", 312.0, 1555.0, 40.0, 1.30)
_QWEN25_05B = ModelArch("qwen2.5-0.5b", 0.49, 24, 896, 2, 64, 151936)


@dataclass(frozen=True)
class PublishedMeasurement:
    """One published number and the setup that produced it."""

    label: str
    source: str
    accelerator: AcceleratorSpec
    arch: ModelArch
    tensor_parallel: int
    kind: str  #: "decode_itl" (s per token), "batch_e2e" (s for the batch), "batch_ttft" (s to first token)
    batch: int
    input_len: int
    output_len: int
    measured_s: float
    fit: bool = True  #: in the fit set; False: held out, never used to choose the constants
    prompt_lens: tuple[int, ...] = ()  #: batch_ttft: each prompt's length

    def predict(self, efficiency: Efficiency = DEFAULT_EFFICIENCY) -> float:
        model = RooflineModel(self.accelerator, self.arch, self.tensor_parallel, efficiency)
        if self.kind == "decode_itl":
            context = self.input_len + self.output_len // 2
            return model.decode_step_seconds(self.batch, self.batch * context)
        if self.kind == "batch_e2e":
            total = model.step_seconds([PrefillChunk(self.input_len) for _ in range(self.batch)])
            for step in range(1, self.output_len):
                total += model.decode_step_seconds(self.batch, self.batch * (self.input_len + step))
            return total
        if self.kind == "batch_ttft":
            step = model.step_seconds([PrefillChunk(n) for n in self.prompt_lens])
            return step + efficiency.request_overhead_s
        raise ValueError(
            f"unknown measurement kind {self.kind!r}; expected 'decode_itl', 'batch_e2e' or 'batch_ttft'"
        )


@dataclass(frozen=True)
class CalibrationPoint:
    measurement: PublishedMeasurement
    predicted_s: float

    @property
    def error(self) -> float:
        """Relative error as a fraction (0.1 = 10%)."""
        return abs(self.predicted_s - self.measurement.measured_s) / self.measurement.measured_s


_NIGHTLY = "vLLM nightly performance benchmark (buildkite vllm/performance-benchmark build 9515)"

PUBLISHED_MEASUREMENTS: tuple[PublishedMeasurement, ...] = (
    PublishedMeasurement(
        "llama-3.1-8b a100-40gb bs1 itl",
        "johnmusgrave.com: vLLM throughput-latency sweep on NVIDIA A100 (vLLM 0.23.0)",
        _A100_40GB, model_arch("llama-3-8b"), 1, "decode_itl", 1, 1024, 128, 1.0 / 75.0,
    ),
    PublishedMeasurement(
        "llama-3.1-8b h100 bs1 tpot",
        "yobitelcomm.github.io InferenceBench concurrency-sweep recipe (vLLM 0.21.0)",
        accelerator("nvidia-h100"), model_arch("llama-3-8b"), 1, "decode_itl", 1, 256, 256, 0.00648,
    ),
    PublishedMeasurement(
        "llama-3.1-8b h200 bs8 32/128 e2e",
        _NIGHTLY, accelerator("nvidia-h200"), model_arch("llama-3-8b"), 1, "batch_e2e", 8, 32, 128, 0.83342,
    ),
    PublishedMeasurement(
        "llama-3-70b 4xh200 bs8 32/128 e2e",
        _NIGHTLY, accelerator("nvidia-h200"), model_arch("llama-3-70b"), 4, "batch_e2e", 8, 32, 128, 2.07753,
    ),
    PublishedMeasurement(
        "qwen2.5-0.5b l4 bs1 itl",
        "ai.wmx.dev serving benchmark (vLLM 0.23.0)",
        accelerator("nvidia-l4"), _QWEN25_05B, 1, "decode_itl", 1, 256, 128, 0.0051,
    ),
)


_LAMBDA = "GitHub LambdaLabsML/vllm-benchmark results/prompt_10"
_SHAREGPT_10 = (13, 25, 27, 10, 329, 29, 399, 328, 4, 205)


def _ttft(label: str, file: str, acc: str, arch: str, tp: int, measured_ms: float, *, fit: bool) -> PublishedMeasurement:
    return PublishedMeasurement(
        label, f"{_LAMBDA}/{file}", accelerator(acc), model_arch(arch), tp, "batch_ttft",
        len(_SHAREGPT_10), sum(_SHAREGPT_10), 1, measured_ms / 1000.0, fit, _SHAREGPT_10,
    )  # fmt: skip


PUBLISHED_MEASUREMENTS += (
    _ttft("llama-3-8b a100 10-prompt ttft", "1xA100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1_len2048.json",
          "nvidia-a100-80gb", "llama-3-8b", 1, 126.87, fit=True),
    _ttft("llama-3-8b h100 10-prompt ttft", "1xH100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1_len2048.json",
          "nvidia-h100", "llama-3-8b", 1, 62.43, fit=True),
    _ttft("llama-3-8b 2xh100 tp2 10-prompt ttft", "2xH100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp2_len2048.json",
          "nvidia-h100", "llama-3-8b", 2, 53.59, fit=True),
    _ttft("llama-3-70b 2xa100 tp2 10-prompt ttft", "2xA100-80GB-SXM/Meta-Llama-3-70B-Instruct_tp2_len2048.json",
          "nvidia-a100-80gb", "llama-3-70b", 2, 506.39, fit=True),
    _ttft("llama-3-8b 2xa100 tp2 10-prompt ttft", "2xA100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp2_len2048.json",
          "nvidia-a100-80gb", "llama-3-8b", 2, 98.64, fit=False),
    _ttft("llama-3-70b 2xh100 tp2 10-prompt ttft", "2xH100-80GB-SXM/Meta-Llama-3-70B-Instruct_tp2_len2048.json",
          "nvidia-h100", "llama-3-70b", 2, 218.92, fit=False),
    _ttft("llama-3-70b 4xh100 tp4 10-prompt ttft", "4xH100-80GB-SXM/Meta-Llama-3-70B-Instruct_tp4_len2048.json",
          "nvidia-h100", "llama-3-70b", 4, 140.56, fit=False),
)  # fmt: skip


def calibration_report(efficiency: Efficiency = DEFAULT_EFFICIENCY) -> list[CalibrationPoint]:
    """Predict every published measurement with ``efficiency``."""
    return [CalibrationPoint(m, m.predict(efficiency)) for m in PUBLISHED_MEASUREMENTS]


def max_error(efficiency: Efficiency = DEFAULT_EFFICIENCY) -> float:
    """The largest relative error over the fit set (in-sample)."""
    return max(point.error for point in calibration_report(efficiency) if point.measurement.fit)


def heldout_max_error(efficiency: Efficiency = DEFAULT_EFFICIENCY) -> float:
    """The largest relative error over the held-out points, never used to fit."""
    return max(point.error for point in calibration_report(efficiency) if not point.measurement.fit)
