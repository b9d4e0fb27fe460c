"""The benchmark runs and ends with one RESULT line carrying the keys automated checks read."""

from __future__ import annotations

import json

import pytest

from benchmarks import diag


def test_quick_benchmark_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert diag.main(["--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("RESULT ")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert (result["detection_rate"], result["false_positives"]) == (1.0, 0)
    assert result["pass_ms_8gpu"] > 0
    assert result["baseline_detection_rate"] < result["detection_rate"]
