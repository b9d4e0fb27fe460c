"""`aibrix-diag` one-shot: exit codes, JSON, the environment variable, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pynvml
import pytest

from runtime_components.diag.cli import main

from .helpers import FAULTS_DIR


@pytest.mark.parametrize(
    ("fault_file", "exit_code", "headline"),
    [
        ("healthy-8gpu.yaml", 0, "aibrix-diag on node gpu-node-healthy: OK (exit 0)"),
        ("pcie-gen-downshift.yaml", 1, "aibrix-diag on node gpu-node-pcie-gen: WARN (exit 1)"),
        ("nvlink-down.yaml", 2, "aibrix-diag on node gpu-node-nvlink: FAIL (exit 2)"),
        ("no-nvml.yaml", 3, "aibrix-diag on node cpu-node: NO-NVML (exit 3)"),
    ],
)
def test_exit_code_follows_the_worst_status(
    fault_file: str, exit_code: int, headline: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--mock", str(FAULTS_DIR / fault_file)]) == exit_code
    assert capsys.readouterr().out.startswith(headline)


def test_json_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "report.json"
    code = main(["--mock", str(FAULTS_DIR / "thermal-slowdown.yaml"), "--json", "--output", str(out_file)])
    report = json.loads(capsys.readouterr().out)
    assert code == 2
    assert (report["status"], report["exitCode"], report["counts"]["fail"]) == ("fail", 2, 2)
    failing = {(c["check"], c["gpu"]) for c in report["checks"] if c["status"] == "fail"}
    assert failing == {("temperature", 3), ("clocks", 3)}
    assert json.loads(out_file.read_text())["node"] == "gpu-node-hot"


def test_mock_through_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AIBRIX_DIAG_MOCK", str(FAULTS_DIR / "ecc-uncorrected.yaml"))
    assert main([]) == 2
    assert "FAIL  gpu 4  ecc            2 uncorrected ECC error(s)" in capsys.readouterr().out
    monkeypatch.setenv("NODE_NAME", "from-downward-api")
    assert main(["--json"]) == 2
    assert json.loads(capsys.readouterr().out)["node"] == "from-downward-api"


def test_config_file_sets_thresholds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("expectedGpuCount: 8\nthresholds:\n  temperatureMarginC: 0\n")
    assert main(["--mock", str(FAULTS_DIR / "temperature-near-slowdown.yaml"), "--config", str(config)]) == 0
    assert "OK (exit 0)" in capsys.readouterr().out


def test_without_nvml_the_real_library_reports_no_nvml(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML; the no-NVML path is covered through the mock")
    assert main(["--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["nvml"] == {
        "available": False,
        "error": "NVML Shared Library Not Found",
        "driverVersion": None,
        "nvmlVersion": None,
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "0", "--periodic"], "error: --interval must be at least 0.001, got 0.0\n"),
        (["--xid-wait-ms", "-5"], "error: --xid-wait-ms must be at least 0, got -5\n"),
        (["--metrics-port", "70000"], "error: --metrics-port must be 0..65535, got 70000\n"),
        (["--max-passes", "0"], "error: --max-passes must be at least 1, got 0\n"),
        (["--bogus"], "error: unrecognized arguments: --bogus\n"),
        (["--xid-wait-ms", "soon"], "error: argument --xid-wait-ms: invalid int value: 'soon'\n"),
    ],
)
def test_bad_arguments_exit_4_with_one_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mock = ["--mock", str(FAULTS_DIR / "healthy-8gpu.yaml")]
    try:
        code = main(mock + argv)
    except SystemExit as stop:
        code = int(stop.code or 0)
    err = capsys.readouterr().err
    assert (code, message in err, "hint: aibrix-diag --help lists the options" in err) == (4, True, True), err
    assert "Traceback" not in err


def test_bad_fault_file_exits_4_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "faults.yaml"
    bad.write_text("gpus:\n  - index: 0\n    ecc: {uncorrectedVolatile: -1}\n")
    assert main(["--mock", str(bad)]) == 4
    assert capsys.readouterr().err.startswith(f"error: {bad}:3:32: gpus[0].ecc.uncorrectedVolatile\n")


def test_node_actions_need_the_node_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("node: {taintOnFailure: true}\nmetrics: {enabled: false}\n")
    code = main(["--mock", str(FAULTS_DIR / "healthy-8gpu.yaml"), "--config", str(config), "--periodic"])
    assert code == 4
    assert "need the node's name: pass --node-name or set NODE_NAME" in capsys.readouterr().err
