"""`aibrix-local smoke` on the quickstart with the model served by real vLLM (CPU build) from
the tiny model: the compiled engine command, rewritten for the CPU, behind the compiled
gateway and Envoy; every check of the simulated run holds (answers, gateway and engine
metrics moved), and nothing is left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.local_stack.harness import processes_naming

from .conftest import PYTHON

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_smoke_with_a_real_vllm_engine(tiny_model: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = subprocess.run(
        [sys.executable, "-m", "local_stack.cli", "smoke", str(REPO / "examples" / "stacks" / "quickstart.yaml"),
         "--model-dir", f"qwen2-5-0-5b={tiny_model / 'model'}", "--vllm-python", PYTHON, "--log-dir", str(logs)],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=dict(os.environ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "real vLLM on the CPU" in result.stderr
    assert "smoke quickstart: 5/5 checks ok" in result.stdout
    assert (logs / "engine-qwen2-5-0-5b" / "cache").is_dir()  # vLLM's caches stayed in the run's folder
    assert processes_naming(logs) == []
