"""`aibrix-local smoke` passes on every example stack, as a real process, and leaves nothing behind.

Each run starts simulated engines (one process per workload, the plan's replicas, at most 4),
the gateway, real Envoy and whatever else the stack has, sends requests to every model and
adapter through Envoy, checks metrics moved, and stops.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.ports import port_busy

from .harness import EXAMPLES, local_cli, processes_naming

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stack", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_smoke_passes_on_every_example(stack: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = local_cli("smoke", str(stack), "--log-dir", str(logs))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OpenAI base URL http://127.0.0.1:" in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("smoke ") and "checks ok" in summary
    done, total = summary.rsplit(" ", 3)[1].split("/")
    assert done == total and int(total) >= 5
    assert "FAIL" not in result.stdout
    assert (logs / "gateway.log").exists() and (logs / "envoy.log").exists()
    assert processes_naming(logs) == []
    port = int(result.stdout.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    assert not port_busy(port)
