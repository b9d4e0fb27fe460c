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
    """Terminate ``proc`` (if it still runs), reap it and close its pipes; returns its exit status.

    Read what you need from its pipes first: they are closed here, so none is left to the
    garbage collector (a ResourceWarning, an error in the test suite)."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                return proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait(5)
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
