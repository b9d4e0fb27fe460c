"""The stop signal of a long-running component: SIGINT/SIGTERM, or an optional run time.

Where it sits: every CLI that serves until told to stop (gateway, scaler and its local
runner, kv pool member, sidecar, engine simulator) awaits ``stop_event(...).wait()`` and
then drains; Kubernetes sends SIGTERM before it kills a pod, a terminal sends SIGINT.
"""

from __future__ import annotations

import asyncio
import signal

__all__ = ["stop_event"]


def stop_event(duration_s: float | None = None) -> asyncio.Event:
    """An event set on SIGINT or SIGTERM, or ``duration_s`` seconds from now when given.

    Call it inside the running event loop (it installs the loop's signal handlers).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    return stop
