"""``aibrix-optimize plan`` from files: the table, JSON, and one clear error per bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runtime_components.optimizer.cli import main
from tests.optimizer.samples import SLO, config_doc, write_setup


def test_plan_prints_table_with_cost(tmp_path, capsys):
    assert main(["plan", "--config", str(write_setup(tmp_path)), "--routing"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["model", "pool", "accelerator", "replicas", "gpus", "req/s", "busy", "$/hour"]
    total = next(line for line in lines if line.startswith("total")).split()
    assert total[1:3] == ["2", "2"] and total[-1] == "1.85"
    assert "solver: cbc (optimal)" in out
    assert "share per pool" in out


@pytest.mark.parametrize("solver", ["cbc", "highs"])
def test_plan_json_and_solver_override(tmp_path, capsys, solver):
    assert main(["plan", "--config", str(write_setup(tmp_path)), "--json", "--solver", solver]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["solver"] == solver and plan["status"] == "optimal"
    assert plan["costPerHour"] == pytest.approx(1.85)
    assert {(p["pool"], p["replicas"]) for p in plan["pools"]} == {("a10", 1), ("l20", 1)}


def test_workload_override_and_empty_workload_keeps_min_replicas(tmp_path, capsys):
    config = write_setup(tmp_path)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"cells": []}))
    assert main(["plan", "--config", str(config), "--workload", str(empty), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["costPerHour"] == pytest.approx(0.75)  # minReplicas 1 on the cheapest pool


ERRORS = [
    ("infeasible-cap",
     dict(config=config_doc(pools=[{"name": "a10", "accelerator": "nvidia-a10", "costPerGpuHour": 0.75, "maxGpus": 0},
                                   {"name": "l20", "accelerator": "nvidia-l20", "costPerGpuHour": 1.1, "maxGpus": 1}])),
     3, "error: no plan meets the SLO within the constraints:\n  - pool"),
    ("missing-profile",
     dict(config=config_doc(pools=[{"name": "a10", "accelerator": "nvidia-a10", "costPerGpuHour": 0.75},
                                   {"name": "h100", "accelerator": "nvidia-h100", "costPerGpuHour": 3.0}],
                            models=[{"name": "chat", "pools": ["a10", "h100"], "slo": SLO}])),
     1, "error: no profile for model 'chat' on nvidia-h100 with 1 GPU(s) per replica (pool 'h100'); loaded profiles: "
        "chat@nvidia-a10x1, chat@nvidia-l20x1\n  hint: run `aibrix-optimize derive`"),
    ("slo-mismatch",
     dict(config=config_doc(models=[{"name": "chat", "pools": ["a10"], "slo": {"ttftP99Ms": 200}}])),
     1, "was made for SLO ttftP99Ms=1000, tpotP99Ms=50, but the config asks for ttftP99Ms=200"),
    ("gateway-source-without-file",
     dict(config=config_doc(workload={"gatewayMetricsUrls": ["http://127.0.0.1:1/metrics"]})),
     1, "the config reads its workload from gateways; `plan` needs a file\n  hint: pass --workload FILE"),
]


@pytest.mark.parametrize("case_id, setup, code, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_exit_non_zero_with_one_message(tmp_path, capsys, case_id, setup, code, message):
    config = write_setup(tmp_path, **setup)
    assert main(["plan", "--config", str(config)]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("argv, message", [
    (["derive", "--model", "llama-3-8b", "--input-buckets", "100,512", "-o", "p.json"],
     "argument --input-buckets: [100]: expected log2 token buckets from 16, 32"),
    (["derive", "--model", "llama-3-8b", "--gpus-per-replica", "0", "-o", "p.json"],
     "argument --gpus-per-replica: expected an integer >= 1, got '0'"),
    (["profile", "--url", "http://x", "--model", "m", "--accelerator", "nvidia-a10", "--speedup", "-2", "-o", "p"],
     "argument --speedup: expected a number > 0, got '-2'"),
    (["plan"], "the following arguments are required: --config"),
])
def test_bad_arguments_exit_2_without_traceback(tmp_path, argv, message):
    result = subprocess.run([sys.executable, "-m", "runtime_components.optimizer.cli", *argv],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
