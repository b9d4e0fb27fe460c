"""Roofline-derived profiles: the max rate per cell found by simulating the engine model.

For a model on an accelerator (``gpusPerReplica`` GPUs in tensor parallel), each
(input bucket, output bucket) cell gets a ``RateSearch`` whose probes are discrete-event
simulations (``runtime_components.engine_sim.des``) of one engine serving requests of
``profiles.representative_tokens`` tokens (by default the geometric middle of the bucket's
range, a typical request; or its upper bound, the worst case, so the rate holds for every
request in the cell), arriving as a seeded Poisson process. Probes are judged by
``search.slo_met``, as the profiler judges real traffic.

Speed: the search starts from an analytic estimate, so few probes are needed:

    B      = min(max_num_seqs, KV tokens / (I + O), largest batch whose decode step <= TPOT)
    r_dec  = B / (O * step(B))                (decode throughput at that batch)
    r_pre  = 1 / prefill_seconds(I)            (prefill is compute-bound)
    start  = 1 / (1 / r_dec + 1 / r_pre)       (both share one GPU)

A cell is unservable (rate 0) when the request does not fit (``I + O > max_model_len`` or
more KV than the engine has) or a lone request already misses the SLO. Results are
memoised per process (the service derives once per model x accelerator).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace

from aibrix_spec.catalog import ACCELERATORS, MODEL_ARCHS, accelerator, model_arch
from aibrix_spec.components.optimizer import (
    DEFAULT_DERIVE_INPUT_BUCKETS,
    DEFAULT_DERIVE_OUTPUT_BUCKETS,
    GpuProfile,
    OptimizerModel,
    SloTargets,
)
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import Simulation
from runtime_components.engine_sim.perf import RooflineModel
from runtime_components.optimizer.errors import OptimizerError
from runtime_components.optimizer.profiles import representative_tokens
from runtime_components.optimizer.search import (
    WARMUP_FRACTION,
    ProbeStats,
    RateSearch,
    arrival_offsets,
    probe_requests,
    slo_met,
)

__all__ = [
    "DEFAULT_INPUT_BUCKETS",
    "DEFAULT_OUTPUT_BUCKETS",
    "simulate_probe",
    "derive_cell",
    "derive_profile",
    "deriver_for",
    "analytic_start",
]

DEFAULT_INPUT_BUCKETS = DEFAULT_DERIVE_INPUT_BUCKETS
DEFAULT_OUTPUT_BUCKETS = DEFAULT_DERIVE_OUTPUT_BUCKETS
DEFAULT_REQUESTS_PER_PROBE = 100  #: the fewest requests a probe sends
MAX_REQUESTS_PER_PROBE = 1500


def _engine(arch: str, accel: str, gpus: int, template: EngineConfig) -> EngineConfig:
    return replace(template, accelerator=accel, model_arch=arch, tensor_parallel=gpus, enable_prefix_caching=False)


def simulate_probe(config: EngineConfig, input_tokens: int, output_tokens: int, rate: float, *,
                   requests: int, seed: int) -> ProbeStats:
    """One engine, ``requests`` Poisson arrivals at ``rate``: TTFT/TPOT of the judged ones."""
    trace = [
        # Distinct token ids per request: no prefix-cache hits even if caching were on.
        SimRequest(f"p{j}", [(j * 7919 + k) % 32000 for k in range(input_tokens)], output_tokens, at)
        for j, at in enumerate(arrival_offsets(rate, requests, seed))
    ]
    records = Simulation([config], lambda _req, _engines: 0).run(trace)
    records.sort(key=lambda r: r.arrival_s)
    stats = ProbeStats(rate)
    for record in records[int(len(records) * WARMUP_FRACTION):]:
        if record.error is not None or record.ttft_s is None:
            stats.errors.append(record.error or "no first token")
            continue
        stats.ttft_s.append(record.ttft_s)
        if record.tpot_s is not None:
            stats.tpot_s.append(record.tpot_s)
    return stats


def analytic_start(config: EngineConfig, input_tokens: int, output_tokens: int, slo: SloTargets) -> float:
    """A first guess of the max rate from the roofline alone (see the module docstring)."""
    model = RooflineModel(accelerator(config.accelerator), model_arch(config.model_arch), config.tensor_parallel)
    kv_tokens = model.kv_capacity_blocks(config.block_size, config.gpu_memory_utilization) * config.block_size
    batch = max(1, min(config.max_num_seqs, kv_tokens // (input_tokens + output_tokens)))
    context = input_tokens + output_tokens // 2
    if slo.tpot_p99_ms is not None:
        while batch > 1 and model.decode_step_seconds(batch, batch * context) * 1000 > slo.tpot_p99_ms:
            batch //= 2
    decode_rate = batch / (output_tokens * model.decode_step_seconds(batch, batch * context))
    prefill_rate = 1.0 / model.prefill_seconds(min(input_tokens, config.max_num_batched_tokens)) * min(
        1.0, config.max_num_batched_tokens / input_tokens)
    return 1.0 / (1.0 / decode_rate + 1.0 / prefill_rate)


def derive_cell(config: EngineConfig, input_tokens: int, output_tokens: int, slo: SloTargets, *,
                requests: int = DEFAULT_REQUESTS_PER_PROBE, seed: int = 0, rel_tol: float = 0.1,
                max_probes: int = 12) -> RateSearch:
    """The max rate of one cell (``max_rate`` 0 when unservable)."""
    blocks_needed = -(-(input_tokens + output_tokens) // config.block_size)
    model = RooflineModel(accelerator(config.accelerator), model_arch(config.model_arch), config.tensor_parallel)
    if (input_tokens + output_tokens > config.max_model_len
            or blocks_needed > model.kv_capacity_blocks(config.block_size, config.gpu_memory_utilization)):
        return RateSearch(start=1.0, max_probes=0)
    lone = simulate_probe(config, input_tokens, output_tokens, 0.0, requests=1, seed=seed)
    if not slo_met(lone, slo):
        return RateSearch(start=1.0, max_probes=0)  # a lone request already misses the SLO
    lone_e2e = lone.ttft_s[0] + (output_tokens - 1) * (lone.tpot_s[0] if lone.tpot_s else 0.0)
    search = RateSearch(start=analytic_start(config, input_tokens, output_tokens, slo), rel_tol=rel_tol,
                        max_probes=max_probes)
    while (rate := search.next_rate()) is not None:
        n = probe_requests(rate, lone_e2e, minimum=requests, maximum=MAX_REQUESTS_PER_PROBE)
        stats = simulate_probe(config, input_tokens, output_tokens, rate, requests=n, seed=seed)
        search.record(rate, slo_met(stats, slo))
    return search


def derive_profile(arch: str, accel: str, *, slo: SloTargets, gpus_per_replica: int = 1,
                   served_name: str | None = None, input_buckets: tuple[int, ...] = DEFAULT_INPUT_BUCKETS,
                   output_buckets: tuple[int, ...] = DEFAULT_OUTPUT_BUCKETS,
                   template: EngineConfig | None = None, requests: int = DEFAULT_REQUESTS_PER_PROBE,
                   seed: int = 0, rel_tol: float = 0.1, request_tokens: str = "geometric") -> GpuProfile:
    """A ``roofline`` profile for ``arch`` on ``gpus_per_replica`` x ``accel``."""
    if arch not in MODEL_ARCHS:
        raise OptimizerError(
            f"unknown model architecture {arch!r}; known: {', '.join(sorted(MODEL_ARCHS))}\n"
            f"  hint: set the model's `arch` to a catalogue key, or supply a measured profile")
    if accel not in ACCELERATORS:
        raise OptimizerError(f"unknown accelerator {accel!r}; known: {', '.join(sorted(ACCELERATORS))}")
    config = _engine(arch, accel, gpus_per_replica, template or EngineConfig())
    try:
        RooflineModel(accelerator(accel), model_arch(arch), gpus_per_replica).kv_capacity_blocks(
            config.block_size, config.gpu_memory_utilization)
    except ValueError as exc:
        raise OptimizerError(str(exc)) from None
    inputs = [representative_tokens(input_buckets, k, request_tokens) for k in range(len(input_buckets))]
    outputs = [representative_tokens(output_buckets, k, request_tokens) for k in range(len(output_buckets))]
    rows = [
        [round(derive_cell(config, i, o, slo, requests=requests, seed=seed, rel_tol=rel_tol).max_rate, 6)
         for o in outputs]
        for i in inputs
    ]
    return GpuProfile(model=served_name or arch, accelerator=accel, gpus_per_replica=gpus_per_replica, slo=slo,
                      method="roofline", request_tokens=request_tokens,  # type: ignore[arg-type]
                      input_buckets=list(input_buckets), output_buckets=list(output_buckets), max_rps=rows)


@functools.lru_cache(maxsize=64)
def _derive_cached(arch: str, accel: str, gpus: int, served: str, slo: SloTargets,
                   inputs: tuple[int, ...], outputs: tuple[int, ...], request_tokens: str) -> GpuProfile:
    return derive_profile(arch, accel, slo=slo, gpus_per_replica=gpus, served_name=served,
                          input_buckets=inputs, output_buckets=outputs, request_tokens=request_tokens)


def deriver_for(
    input_buckets: Sequence[int], output_buckets: Sequence[int], request_tokens: str = "geometric"
) -> Callable[[OptimizerModel, str], GpuProfile]:
    """A deriver on the given grid with default engine arguments, memoised per process."""

    def derive(model: OptimizerModel, accel: str) -> GpuProfile:
        return _derive_cached(model.arch_name, accel, model.gpus_per_replica, model.name, model.slo,
                              tuple(input_buckets), tuple(output_buckets), request_tokens)

    return derive
