"""A faulty GPU in the diag fault file slows or fails the simulated engine placed on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from aibrix_spec.components.diag import FaultFile
from runtime_components.engine_sim.cli import main
from runtime_components.engine_sim.cluster import EngineCluster
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.faults import Faults
from runtime_components.engine_sim.gpu_faults import engine_faults, load_fault_file, place_engines

from .helpers import complete, scrape, with_cluster

FAULTS_DIR = Path(__file__).resolve().parents[2] / "examples" / "faults"
EXAMPLES = sorted(FAULTS_DIR.glob("*.yaml"))

# (file, engines, --gpu-index, tensor parallel, expected {engine: (slowdown, error rate, crash)})
PLACEMENT_CASES = [
    ("thermal-slowdown.yaml", 8, 0, 1, {3: (2.0, 0.0, False)}),
    ("thermal-slowdown.yaml", 4, 0, 2, {1: (2.0, 0.0, False)}),  # GPUs 2-3: the slow one sets the pace
    ("thermal-slowdown.yaml", 2, 4, 1, {}),  # engines on GPUs 4 and 5: healthy
    ("thermal-slowdown.yaml", 1, 3, 1, {0: (2.0, 0.0, False)}),
    ("sw-thermal-slowdown.yaml", 8, 0, 1, {7: (1.25, 0.0, False)}),
    ("power-brake.yaml", 8, 0, 1, {4: (2.0, 0.0, False)}),
    ("nvlink-down.yaml", 8, 0, 1, {2: (1.0125, 0.0, False)}),
    ("ecc-uncorrected.yaml", 8, 0, 1, {4: (1.0, 0.04, False)}),
    ("ecc-uncorrected.yaml", 1, 4, 4, {0: (1.0, 0.04, False)}),  # GPUs 4-7
    ("gpu-lost.yaml", 8, 0, 1, {2: (1.0, 1.0, True)}),
    ("gpu-fell-off-bus.yaml", 8, 0, 1, {6: (1.0, 1.0, True)}),
    ("xid-fallen-off-bus.yaml", 8, 0, 1, {5: (1.0, 1.0, True)}),
    ("row-remap-failed.yaml", 8, 0, 1, {6: (1.0, 1.0, True)}),
    ("driver-not-loaded.yaml", 2, 0, 1, {0: (1.0, 0.0, True), 1: (1.0, 0.0, True)}),
    ("no-nvml.yaml", 1, 0, 1, {0: (1.0, 0.0, True)}),
]


@pytest.mark.parametrize(("name", "engines", "first", "tp", "expected"), PLACEMENT_CASES,
                         ids=[f"{c[0]}-{c[1]}x{c[3]}@{c[2]}" for c in PLACEMENT_CASES])  # fmt: skip
def test_each_engine_suffers_its_gpus_faults(name: str, engines: int, first: int, tp: int,
                                              expected: dict[int, tuple[float, float, bool]]) -> None:  # fmt: skip
    placements = place_engines(load_fault_file(FAULTS_DIR / name), engines, first_gpu=first, tensor_parallel=tp)
    got = {i: (f.slowdown, round(f.error_rate, 6), f.crash) for i, f in engine_faults(placements).items()}
    assert got == expected
    assert all(p.reasons for p in placements if p.engine in expected)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_fault_file_places_engines(path: Path) -> None:
    fault_file = load_fault_file(path)
    engines = max(1, fault_file.gpu_count)
    placements = place_engines(fault_file, engines)
    assert [p.engine for p in placements] == list(range(engines))
    for p in placements:  # a placement's faults are always valid engine faults
        assert p.faults.slowdown >= 1.0 and 0.0 <= p.faults.error_rate <= 1.0
        assert p.describe().startswith(f"engine {p.engine} on ")


def test_two_gpus_errors_combine_as_independent_failures() -> None:
    fault_file = FaultFile.model_validate(
        {"gpuCount": 2, "gpus": [{"index": 0, "xidEvents": [13] * 5}, {"index": 1, "xidEvents": [13] * 10}]}
    )
    (only,) = place_engines(fault_file, 1, tensor_parallel=2)
    assert only.faults.error_rate == pytest.approx(1 - (1 - 0.1) * (1 - 0.2))
    assert only.describe().startswith("engine 0 on GPUs 0-1: slowdown x1, error rate 0.28 (")


def test_too_few_gpus_is_explained() -> None:
    with pytest.raises(ValueError) as info:
        place_engines(load_fault_file(FAULTS_DIR / "gpu-lost.yaml"), 3, first_gpu=6)
    assert str(info.value) == (
        "3 engine(s) x 1 GPU(s) from GPU 6 need GPUs up to 8, but the fault file's node has gpuCount 8; "
        "hint: lower --engines or --gpu-index, or raise gpuCount in the file"
    )


def test_a_hot_gpu_slows_its_engine_and_a_lost_gpu_crashes_its_engine() -> None:
    slow = engine_faults(place_engines(load_fault_file(FAULTS_DIR / "thermal-slowdown.yaml"), 2, first_gpu=2))
    lost = engine_faults(place_engines(load_fault_file(FAULTS_DIR / "gpu-lost.yaml"), 3))
    faults: dict[int, Faults] = {0: slow.get(0, Faults()), 1: slow[1], 2: lost[2]}
    prompt = "a long prompt for the hot engine " * 150

    async def body(cluster: EngineCluster, s: aiohttp.ClientSession) -> None:
        healthy, hot, dead = (e["url"] for e in cluster.endpoints())
        for url in (healthy, hot):
            assert (await complete(s, url, prompt, 3))[0] == 200
        ratio = (await scrape(s, hot))["vllm:e2e_request_latency_seconds_sum"] / (
            await scrape(s, healthy))["vllm:e2e_request_latency_seconds_sum"]  # fmt: skip
        assert ratio > 1.5
        with pytest.raises(aiohttp.ClientConnectionError):
            await complete(s, dead, "anyone there?", 2)

    with_cluster(body, [EngineConfig(accelerator="nvidia-a10")] * 3, faults=faults)


def test_cli_reads_the_fault_file_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "AIBRIX_DIAG_MOCK": str(FAULTS_DIR / "gpu-lost.yaml")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", "3", "--duration", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[-1].strip() == "READY", lines
        urls = [json.loads(line)["url"] for line in lines[:3]]
        with urllib.request.urlopen(urls[0] + "/health", timeout=5) as resp:
            assert resp.status == 200
        refused = False
        for _ in range(50):  # bounded: the crash lands within a few loop turns of the start
            try:
                urllib.request.urlopen(urls[2] + "/health", timeout=2).close()
            except (urllib.error.URLError, ConnectionError):
                refused = True
                break
            time.sleep(0.05)
        assert refused
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "gpu-faults: engine 2 on GPU 2: crashes (gpu 2: GPU is lost)" in err


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["--gpu-faults", "absent.yaml"], "error: absent.yaml"),
        (["--gpu-index", "1"], "error: --gpu-index needs a GPU fault file: pass --gpu-faults FILE or set AIBRIX_DIAG_MOCK"),
        (["--gpu-faults", str(FAULTS_DIR / "gpu-lost.yaml"), "--gpu-index", "-1"], "error: --gpu-index must be >= 0, got -1"),
        (["--gpu-faults", str(FAULTS_DIR / "gpu-lost.yaml"), "--engines", "9"], "error: 9 engine(s) x 1 GPU(s) from GPU 0"),
    ],
)
def test_bad_gpu_fault_arguments_exit_2(argv: list[str], first_line: str, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("AIBRIX_DIAG_MOCK", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(first_line) and "Traceback" not in err


def test_a_bad_fault_file_is_reported_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "faults.yaml"
    bad.write_text("gpus:\n  - index: 1\n    temprature: {currentC: 90}\n", encoding="utf-8")
    assert main(["--gpu-faults", str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"error: {bad}:3:5: gpus[0].temprature\n  unknown field `temprature`\n"
        "      3 |     temprature: {currentC: 90}\n        |     ^\n  hint: did you mean `temperature`?\n"
    )
