"""Stopping a child process politely, then firmly.

Where it sits: whatever starts component processes (the benchmarks, the integration tests'
harnesses) stops them through ``stop_process`` so none outlives its run: SIGTERM first
(each component drains on it, see ``shutdown.py``), SIGKILL when it has not exited after
``grace_s`` seconds. ``die_with_parent`` covers the case where the starter itself is killed
before it can stop anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from typing import Any

__all__ = ["die_with_parent", "stop_process"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Pass as ``preexec_fn`` (it runs in the child between fork and exec): on Linux the child
    gets ``sig`` when its parent dies, even by ``kill -9``, so it never outlives its starter.
    Elsewhere (no ``prctl``) it does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


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
