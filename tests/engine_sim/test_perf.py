"""Roofline model: shape of the cost curve, KV capacity, calibration error, bad inputs."""

from __future__ import annotations

import pytest

from aibrix_spec.catalog import ACCELERATORS, MODEL_ARCHS, accelerator, model_arch
from runtime_components.engine_sim.calibration import (
    PUBLISHED_MEASUREMENTS,
    calibration_report,
    heldout_max_error,
    max_error,
)
from runtime_components.engine_sim.perf import DEFAULT_EFFICIENCY, Efficiency, PrefillChunk, RooflineModel


def _model(gpu: str = "nvidia-a100-80gb", arch: str = "llama-3-8b", tp: int = 1) -> RooflineModel:
    return RooflineModel(accelerator(gpu), model_arch(arch), tp)


def test_decode_is_memory_bound_and_large_prefill_compute_bound() -> None:
    m = _model()
    assert m.step_cost((), 1, 1000).bound == "memory"
    assert m.step_cost([PrefillChunk(2048)]).bound == "compute"


@pytest.mark.parametrize(
    ("faster", "slower"),
    [
        ("nvidia-h100", "nvidia-a100-80gb"),
        ("nvidia-h200", "nvidia-h100"),
        ("nvidia-a100-80gb", "nvidia-l20"),
        ("nvidia-l20", "nvidia-l4"),
    ],
)
def test_faster_gpu_decodes_faster(faster: str, slower: str) -> None:
    assert _model(faster).decode_step_seconds(8, 8 * 1000) < _model(slower).decode_step_seconds(8, 8 * 1000)


def test_costs_grow_with_work() -> None:
    m = _model()
    assert m.prefill_seconds(512) < m.prefill_seconds(2048)
    assert m.prefill_seconds(512, context_tokens=0) < m.prefill_seconds(512, context_tokens=4000)
    assert m.decode_step_seconds(1, 100) < m.decode_step_seconds(64, 64 * 2000)
    assert m.step_seconds() == 0.0


def test_tensor_parallel_speeds_up_and_adds_capacity() -> None:
    one, four = _model("nvidia-h100", "llama-3-70b", 2), _model("nvidia-h100", "llama-3-70b", 4)
    assert four.decode_step_seconds(8, 8000) < one.decode_step_seconds(8, 8000)
    assert four.kv_capacity_blocks() > one.kv_capacity_blocks()


@pytest.mark.parametrize("gpu", sorted(ACCELERATORS))
@pytest.mark.parametrize("arch", ["llama-3-8b", "qwen2.5-7b", "deepseek-coder-6.7b"])
def test_small_models_fit_every_catalogue_gpu(gpu: str, arch: str) -> None:
    blocks = _model(gpu, arch).kv_capacity_blocks(16, 0.9)
    assert blocks * 16 >= 2048  # at least one full-length request


def test_kv_capacity_matches_formula() -> None:
    m = _model("nvidia-a100-80gb", "llama-3-8b")
    arch = MODEL_ARCHS["llama-3-8b"]
    free = 80 * 1024**3 * 0.9 - arch.weight_bytes - 1.5 * 1024**3
    assert m.kv_capacity_blocks(16, 0.9) == int(free // (arch.kv_bytes_per_token * 16))


def test_calibration_within_25_percent_of_every_published_measurement() -> None:
    report = calibration_report()
    assert len(report) >= 3
    for point in report:
        m = point.measurement
        assert point.error < 0.25, f"{m.label}: predicted {point.predicted_s}, measured {m.measured_s}"
    assert max_error() == max(p.error for p in report if p.measurement.fit)
    assert heldout_max_error() == max(p.error for p in report if not p.measurement.fit)
    assert len({m.source for m in PUBLISHED_MEASUREMENTS}) >= 3


def test_ttft_is_held_out_and_within_30_percent() -> None:
    held = [m for m in PUBLISHED_MEASUREMENTS if not m.fit]
    assert len(held) >= 3 and all(m.kind == "batch_ttft" for m in held)
    assert any(m.kind == "batch_ttft" for m in PUBLISHED_MEASUREMENTS if m.fit)
    assert heldout_max_error() <= 0.3


def test_calibration_is_sensitive_to_efficiency() -> None:
    assert max_error(Efficiency(memory=0.4)) > 0.25
    # without the serving path's fixed cost, small-model TTFT is badly under-predicted
    assert max_error(Efficiency(request_overhead_s=0.0)) > 0.25


def test_the_serving_path_delays_first_tokens_not_the_gpu() -> None:
    from runtime_components.engine_sim import EngineConfig, Simulation
    from runtime_components.engine_sim.config import SimRequest

    req = SimRequest("r", tuple(range(200)), 4, 0.0)
    fast = RooflineModel(accelerator("nvidia-h100"), model_arch("llama-3-8b"))
    records = Simulation([EngineConfig(accelerator="nvidia-h100", model_arch="llama-3-8b")], lambda r, e: 0).run([req])
    prefill = fast.prefill_seconds(200)
    assert records[0].ttft_s == pytest.approx(DEFAULT_EFFICIENCY.request_overhead_s + prefill)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: _model("nvidia-a10", "llama-3-70b").kv_capacity_blocks(), "does not fit on 1 x nvidia-a10"),
        (lambda: _model(tp=0), "tensor_parallel must be >= 1"),
        (lambda: _model(arch="llama-3-8b", tp=3), "does not divide llama-3-8b's 8 KV heads"),
        (lambda: _model().kv_capacity_blocks(0), "block_size must be >= 1"),
        (lambda: _model().kv_capacity_blocks(16, 1.5), "gpu_memory_utilization must be in (0, 1]"),
        (lambda: Efficiency(compute=0), "Efficiency.compute must be in (0, 1]"),
        (lambda: _model().step_seconds([PrefillChunk(-1)]), "prefill chunk sizes must be >= 0"),
    ],
)
def test_bad_inputs_name_the_problem(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as info:
        build()
    assert message in str(info.value)
