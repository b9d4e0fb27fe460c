"""Periodic mode: a pass every `intervalSeconds`, published to /metrics and (opt-in) the node.

The XID event set stays registered across passes, so events between passes queue in NVML
and are drained (without waiting) at the next pass; each stays reported for `xidHoldSeconds`.
The loop stops on `stop` (SIGTERM/SIGINT in the CLI) or after `max_passes`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from runtime_components.diag.metrics import DiagCollector
from runtime_components.diag.node_actions import NodeReporter
from runtime_components.diag.report import Report
from runtime_components.diag.session import DiagSession

__all__ = ["run_periodic"]

log = logging.getLogger("aibrix.diag")


def run_periodic(
    session: DiagSession,
    *,
    interval_seconds: float,
    stop: threading.Event,
    collector: DiagCollector | None = None,
    reporter: NodeReporter | None = None,
    max_passes: int | None = None,
    on_report: Callable[[Report], None] | None = None,
) -> Report | None:
    """Run passes until `stop` is set or `max_passes` ran; returns the last report."""
    last: Report | None = None
    passes = 0
    while not stop.is_set() and (max_passes is None or passes < max_passes):
        last = session.run_pass(xid_wait_ms=0)
        passes += 1
        if reporter is not None:
            reporter.apply(last)
        if collector is not None:
            collector.update(last, finished_at=time.time(), node_update_errors=reporter.errors if reporter else 0)
        if on_report is not None:
            on_report(last)
        log.info("pass %d on %s: %s (%.1f ms)", passes, session.node, last.status, last.duration_ms)
        if max_passes is not None and passes >= max_passes:
            break
        stop.wait(interval_seconds)
    return last
