"""The diag benchmark scores detectors on where they flag, against the detector-independent truth."""

from __future__ import annotations

import json

import pytest

from benchmarks import diag
from benchmarks.diag import Score, Verdict, score
from benchmarks.diag_cases import Truth

GPU2_FAIL = Truth("gpu", 2, "fail")
NODE_FAIL = Truth("node", None, "fail")

SCORE_CASES = [
    # (truth, flags, expected score, why)
    (GPU2_FAIL, {2: "fail"}, Score(True, True, ()), "the faulty GPU at the right severity"),
    (GPU2_FAIL, {2: "warn"}, Score(True, False, ()), "found, but at another severity"),
    (GPU2_FAIL, {}, Score(False, None, ()), "missed"),
    (GPU2_FAIL, {5: "fail"}, Score(False, None, (5,)), "the wrong GPU: a miss and a false positive"),
    (GPU2_FAIL, {2: "fail", 3: "warn"}, Score(True, True, (3,)), "a healthy neighbour flagged too"),
    (GPU2_FAIL, {None: "fail"}, Score(True, True, (0, 1, 3)), "a node-wide flag drains the healthy GPUs"),
    (NODE_FAIL, {None: "fail"}, Score(True, True, ()), "a node fault flagged on the node"),
    (NODE_FAIL, {1: "fail"}, Score(True, True, (1,)), "a node fault blamed on a healthy GPU"),
    (Truth("healthy"), {}, Score(None, None, ()), "healthy and quiet"),
    (Truth("healthy"), {None: "warn"}, Score(None, None, (0, 1, 2, 3)), "a healthy node flagged"),
]


@pytest.mark.parametrize(("truth", "flags", "expected", "why"), SCORE_CASES, ids=[c[3] for c in SCORE_CASES])
def test_score(truth: Truth, flags: dict, expected: Score, why: str) -> None:
    assert score(truth, Verdict(True, flags), gpu_count=4) == expected, why


def test_the_baseline_is_scored_on_location_not_check_names() -> None:
    # The four-check script has no "device-access" check, but it flags the lost GPU 2: detected.
    rows = {r["fault"]: r for r in diag.evaluate(diag.load_cases())}
    assert rows["gpu-lost"]["baseline"] == ("gpu2:fail", Score(True, True, ()))
    assert rows["nvlink-down"]["baseline"] == ("ok", Score(False, None, ()))
    assert rows["no-nvml"]["baseline"] == ("no-nvml", Score(None, None, ()))


def test_quick_benchmark_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert diag.main(["--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("RESULT ")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert {"detection_rate", "false_positive_gpus", "baseline_detection_rate", "pass_ms_8gpu"} <= set(result)
    assert result["detection_rate"] >= 0.95 and result["false_positive_gpus"] == 0
    assert result["pass_ms_8gpu"] > 0
    assert 0 < result["baseline_detection_rate"] < result["detection_rate"]
