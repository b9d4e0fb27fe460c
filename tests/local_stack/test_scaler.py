"""The stack's scaler drives local engine processes: it reads pods from the local stand-in
API, writes the scale subresource, and the runner starts an engine per new pod and puts it in
the gateway's discovery."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from .harness import processes_naming, start_up
from .test_lifecycle import _ready_line

pytestmark = pytest.mark.slow

# One model owned by the scaler (KPA), minimum 2: the runner starts one replica, the scaler
# clamps to the minimum, so a second engine process must appear and join discovery.
STACK = """\
apiVersion: aibrix.ai/v1alpha1
kind: InferenceStack
metadata: {name: scaled, namespace: llm}
spec:
  gpuPools: [{name: l4, accelerator: nvidia-l4, gpusPerNode: 1}]
  models:
    - name: llama-3-8b
      source: {uri: hf://meta-llama/Meta-Llama-3-8B-Instruct}
      placement: {pools: [l4]}
      replicas: {min: 2, max: 3}
      autoscaling: {policy: kpa, metric: concurrency, target: 24}
"""


def _gateway_up(logs: Path) -> int:
    line = next(x for x in (logs / "gateway.log").read_text().splitlines() if x.startswith('{"event"'))
    with urllib.request.urlopen(f"http://127.0.0.1:{json.loads(line)['httpPort']}/healthz", timeout=2) as resp:
        return int(json.load(resp)["endpoints"]["llama-3-8b"])


def test_the_scaler_scales_local_engine_processes(tmp_path: Path) -> None:
    stack = tmp_path / "scaled.yaml"
    stack.write_text(STACK)
    logs = tmp_path / "logs"
    proc = start_up(str(stack), "--port", "0", "--log-dir", str(logs))
    try:
        _ready_line(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _gateway_up(logs) < 2:
            time.sleep(0.2)
        assert _gateway_up(logs) == 2
        assert len(json.loads((logs / "endpoints.json").read_text())["endpoints"]) == 2
        assert "1 -> 2 replicas (clamped-to-min)" in (logs / "scaler.log").read_text()
        assert len(list(logs.glob("engine-llama-3-8b-*.log"))) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert processes_naming(logs) == []
