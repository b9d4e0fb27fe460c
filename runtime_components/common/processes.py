"""Stopping a child process politely, then firmly.

Where it sits: whatever starts component processes (the benchmarks, the integration tests'
harnesses) stops them through ``stop_process`` so none outlives its run: SIGTERM first
(each component drains on it, see ``shutdown.py``), SIGKILL when it has not exited after
``grace_s`` seconds.
"""

from __future__ import annotations

import subprocess
from typing import Any

__all__ = ["stop_process"]


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> int:
    """Terminate ``proc`` (if it still runs) and reap it; returns its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(5)
