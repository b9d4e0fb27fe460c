"""Stopping: the stop event (signals, run time) and child processes (TERM, then KILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from runtime_components.common.processes import stop_process
from runtime_components.common.shutdown import stop_event

# (name, child program, grace seconds, expected exit status)
CHILDREN = [
    ("exits on TERM", "import time; print('up', flush=True); time.sleep(60)", 10.0, -signal.SIGTERM),
    ("ignores TERM: killed", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print('up', flush=True); time.sleep(60)", 0.2, -signal.SIGKILL),
    ("already gone", "print('up', flush=True)", 10.0, 0),
]


@pytest.mark.parametrize(("program", "grace_s", "status"), [c[1:] for c in CHILDREN], ids=[c[0] for c in CHILDREN])
def test_stop_process(program: str, grace_s: float, status: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"  # its handlers are in place
        if status == 0:
            proc.wait(10)  # the child that ends by itself has ended
        assert stop_process(proc, grace_s=grace_s) == status
        assert proc.stdout.closed  # nothing left for the garbage collector to warn about
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()


def test_stop_event_is_set_by_its_run_time_and_by_sigterm() -> None:
    async def scenario() -> tuple[bool, bool]:
        timed = stop_event(0.05)
        await asyncio.wait_for(timed.wait(), 10)
        signalled = stop_event()
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop: the test process goes on
        await asyncio.wait_for(signalled.wait(), 10)
        return timed.is_set(), signalled.is_set()

    assert asyncio.run(scenario()) == (True, True)
