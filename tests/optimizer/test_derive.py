"""Roofline-derived profiles: unservable cells, sanity against the roofline, clear errors."""

from __future__ import annotations

import json

import pytest

from aibrix_spec.catalog import accelerator, model_arch
from aibrix_spec.components.optimizer import SloTargets
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.perf import RooflineModel
from runtime_components.optimizer.cli import main
from runtime_components.optimizer.derive import derive_cell, derive_profile, simulate_probe
from runtime_components.optimizer.errors import OptimizerError

H100 = EngineConfig(accelerator="nvidia-h100", model_arch="llama-3-8b", enable_prefix_caching=False)
SLO = SloTargets(ttft_p99_ms=500, tpot_p99_ms=50)


UNSERVABLE = [
    # (why, config, input, output, slo)
    ("longer than max_model_len", H100, 8192, 512, SLO),
    ("more KV than the engine has", EngineConfig(accelerator="nvidia-h100", model_arch="llama-3-8b",
                                                 num_gpu_blocks=8, enable_prefix_caching=False), 256, 16, SLO),
    ("lone request misses TTFT", H100, 4096, 16, SloTargets(ttft_p99_ms=20)),
    ("lone request misses TPOT", H100, 256, 64, SloTargets(tpot_p99_ms=1)),
]


@pytest.mark.parametrize("why, config, inp, out, slo", UNSERVABLE, ids=[u[0] for u in UNSERVABLE])
def test_unservable_cells_are_zero(why, config, inp, out, slo):
    search = derive_cell(config, inp, out, slo)
    assert search.max_rate == 0.0


def test_lone_request_matches_the_roofline():
    """With no queueing, TTFT is the serving path's fixed cost plus the prefill step(s), and TPOT
    one decode step (within 5%)."""
    model = RooflineModel(accelerator("nvidia-h100"), model_arch("llama-3-8b"))
    stats = simulate_probe(H100, 1024, 64, 0.0, requests=1, seed=0)
    serving_path = model.efficiency.request_overhead_s
    assert stats.ttft_s[0] == pytest.approx(serving_path + model.prefill_seconds(1024), rel=0.05)
    assert stats.tpot_s[0] == pytest.approx(model.decode_step_seconds(1, 1024 + 32), rel=0.05)


def test_rates_fall_with_longer_outputs_and_the_rate_meets_the_slo():
    short = derive_cell(H100, 256, 32, SLO, requests=60)
    long = derive_cell(H100, 256, 256, SLO, requests=60)
    assert short.max_rate > long.max_rate > 0
    # The reported rate is one that was probed and passed; the next probe above it failed.
    assert (long.max_rate, True) in long.probes
    assert any(rate > long.max_rate and not passed for rate, passed in long.probes)


@pytest.mark.parametrize("arch, accel, message", [
    ("gpt-5", "nvidia-a10", "unknown model architecture 'gpt-5'; known: deepseek-coder-6.7b, llama-3-70b"),
    ("llama-3-8b", "tpu-v9", "unknown accelerator 'tpu-v9'; known: nvidia-a10"),
    ("llama-3-70b", "nvidia-a10", "llama-3-70b (141.2 GB of weights) does not fit on 1 x nvidia-a10"),
])
def test_derive_errors_name_the_problem(arch, accel, message):
    with pytest.raises(OptimizerError) as info:
        derive_profile(arch, accel, slo=SLO, input_buckets=(256,), output_buckets=(32,))
    assert message in str(info.value)


def test_derive_command_writes_a_valid_profile(tmp_path, capsys):
    out = tmp_path / "h100.json"
    code = main(["derive", "--model", "llama-3-8b", "--accelerator", "nvidia-h100", "--ttft-p99-ms", "500",
                 "--tpot-p99-ms", "50", "--input-buckets", "256", "--output-buckets", "32", "-o", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["method"] == "roofline" and doc["model"] == "llama-3-8b"
    assert doc["inputBuckets"] == [256] and doc["outputBuckets"] == [32] and doc["maxRps"][0][0] > 0
    assert capsys.readouterr().out == f"wrote {out}: 1 x 1 cells\n"


def test_derive_command_without_slo_is_an_error(tmp_path, capsys):
    assert main(["derive", "--model", "llama-3-8b", "--accelerator", "nvidia-h100", "-o", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err == "error: an SLO is needed: pass --ttft-p99-ms and/or --tpot-p99-ms\n"


def test_plan_derives_missing_profiles_on_the_configured_grid(tmp_path, capsys):
    config = {
        "pools": [{"name": "h100", "accelerator": "nvidia-h100", "costPerGpuHour": 3.0}],
        "models": [{"name": "llama-3-8b", "pools": ["h100"], "slo": SLO.model_dump(by_alias=True, exclude_none=True)}],
        "workload": {"file": "w.json"},
        "deriveInputBuckets": [256],
        "deriveOutputBuckets": [32],
    }
    (tmp_path / "c.json").write_text(json.dumps(config))
    (tmp_path / "w.json").write_text(json.dumps({"cells": [
        {"model": "llama-3-8b", "inputBucket": 128, "outputBucket": 32, "rps": 5.0}]}))
    assert main(["plan", "--config", str(tmp_path / "c.json"), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "deriving a roofline profile for llama-3-8b on nvidia-h100 (1 x 1 cells)\n"
    plan = json.loads(captured.out)
    assert plan["pools"][0]["replicas"] >= 1 and plan["costPerHour"] == 3.0 * plan["pools"][0]["replicas"]


def test_derive_with_config_writes_one_file_per_model_and_accelerator(tmp_path, capsys):
    config = {
        "pools": [{"name": "h100-a", "accelerator": "nvidia-h100", "costPerGpuHour": 3.0},
                  {"name": "h100-b", "accelerator": "nvidia-h100", "costPerGpuHour": 2.5}],
        "models": [{"name": "org/llama", "arch": "llama-3-8b", "pools": ["h100-a", "h100-b"],
                    "slo": {"ttftP99Ms": 500}}],
        "workload": {"file": "w.json"},
        "deriveInputBuckets": [256],
        "deriveOutputBuckets": [16],
    }
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert main(["derive", "--config", str(tmp_path / "c.json"), "-o", str(tmp_path / "profiles")]) == 0
    # Two pools share one accelerator: one profile, named without the slash.
    files = sorted(p.name for p in (tmp_path / "profiles").iterdir())
    assert files == ["org_llama-nvidia-h100-x1.json"]
    doc = json.loads((tmp_path / "profiles" / files[0]).read_text())
    assert doc["model"] == "org/llama" and doc["inputBuckets"] == [256] and doc["outputBuckets"] == [16]


def test_geometric_profiles_are_recorded_and_not_slower_than_upper():
    kwargs = dict(slo=SLO, input_buckets=(1024,), output_buckets=(64,))
    upper = derive_profile("llama-3-8b", "nvidia-h100", request_tokens="upper", **kwargs)
    middle = derive_profile("llama-3-8b", "nvidia-h100", **kwargs)  # geometric is the default
    assert (upper.request_tokens, middle.request_tokens) == ("upper", "geometric")
    # Shorter requests (513 in, 46 out instead of 1024 and 64) are served at a higher rate.
    assert middle.max_rps[0][0] > upper.max_rps[0][0] > 0
