"""An engine the local scaler started dies with the scaler, even when the scaler is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime_components.common.processes import stop_process

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's prctl")


def gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting for its new parent to reap it counts)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or between open and read
        return True
    return "\nState:\tZ" in state


def test_a_killed_scalers_engine_does_not_outlive_it(tmp_path):
    (tmp_path / "metrics").write_text("up 1\n")  # what the launcher waits for: GET /metrics -> 200
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import asyncio, sys
        from runtime_components.scaler.local.launcher import SubprocessLauncher

        async def main():
            launcher = SubprocessLauncher([sys.executable, "-m", "http.server", "{{port}}", "--bind", "127.0.0.1",
                                           "--directory", {str(tmp_path)!r}])
            await launcher.start("pod-0")
            print(launcher.processes["pod-0"].pid, flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
    """))
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        engine = int(proc.stdout.readline())
        assert not gone(engine)
        os.kill(proc.pid, signal.SIGKILL)  # no chance to stop its pods
        deadline = time.monotonic() + 10
        while not gone(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(engine), "the engine outlived the scaler that started it"
    finally:
        stop_process(proc)
