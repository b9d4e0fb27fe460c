"""XID critical events: an NVML event set, drained with a timeout, and the per-GPU xid check.

`XidMonitor.open()` creates one event set (nvmlEventSetCreate) and registers every GPU that
supports `nvmlEventTypeXidCriticalError` (nvmlDeviceGetSupportedEventTypes,
nvmlDeviceRegisterEvents). `drain(wait_ms)` calls nvmlEventSetWait_v2 once with `wait_ms`, then
with 0 until NVML raises Timeout (at most `max_events`), mapping each event's device to its
index with nvmlDeviceGetIndex and the XID code from `eventData`. NVML only reports events that
happen after registration: the one-shot CLI listens for `xidWaitMs`; the daemon keeps the set
open across passes and remembers events for `xidHoldSeconds`.

Verdict per GPU: an XID in `xidFailCodes` within the window -> fail; any other XID -> warn.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime_components.diag.context import CheckContext, Gpu
from runtime_components.diag.report import CheckResult, Status

__all__ = ["XID_MEANINGS", "XidEvent", "XidMonitor", "check_xid"]

# Short meanings from NVIDIA's XID catalogue, for the operator's message.
XID_MEANINGS = {
    13: "graphics engine exception, usually an application fault",
    31: "GPU memory page fault, usually an application fault",
    43: "GPU stopped processing, usually an application fault",
    45: "preemptive cleanup after an earlier error",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remap recorded",
    64: "ECC page retirement or row remap failed",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP firmware RPC timeout",
    120: "GSP firmware error",
    140: "unrecovered ECC error",
}


@dataclass(frozen=True)
class XidEvent:
    gpu: int
    uuid: str  #: events follow the GPU, not its index, when the node's GPU set changes
    xid: int
    seen_at: float  #: monotonic seconds


class XidMonitor:
    """One NVML event set over the node's GPUs, and the events it has seen."""

    def __init__(
        self,
        nvml: Any,
        gpus: list[Gpu],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_events: int = 10_000,
        history: deque[XidEvent] | None = None,
    ) -> None:
        self._nvml = nvml
        self._gpus = gpus
        self._clock = clock
        self._max_events = max_events
        self._event_set: Any = None
        self.unwatched: dict[int, str] = {}  # gpu index -> why its XIDs are not watched
        self.history: deque[XidEvent] = deque(history or (), maxlen=max_events)

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(gpu.identity.uuid for gpu in self._gpus)

    def open(self) -> None:
        nv = self._nvml
        self._event_set = nv.nvmlEventSetCreate()
        for gpu in self._gpus:
            try:
                supported = nv.nvmlDeviceGetSupportedEventTypes(gpu.handle)
                if not supported & nv.nvmlEventTypeXidCriticalError:
                    self.unwatched[gpu.index] = "the GPU does not report XID events"
                    continue
                nv.nvmlDeviceRegisterEvents(gpu.handle, nv.nvmlEventTypeXidCriticalError, self._event_set)
            except nv.NVMLError as error:
                self.unwatched[gpu.index] = f"registering for XID events failed: {error}"

    def drain(self, wait_ms: int) -> list[XidEvent]:
        """Collect queued events: wait up to `wait_ms` for the first, then take what is queued."""
        nv = self._nvml
        if self._event_set is None:
            raise RuntimeError("XidMonitor.drain() before open()")
        seen: list[XidEvent] = []
        timeout = wait_ms
        while len(seen) < self._max_events:
            try:
                data = nv.nvmlEventSetWait_v2(self._event_set, timeout)
            except nv.NVMLError_Timeout:
                break
            timeout = 0
            if data.eventType & nv.nvmlEventTypeXidCriticalError:
                index = nv.nvmlDeviceGetIndex(data.device)
                uuid = next((g.identity.uuid for g in self._gpus if g.index == index), "")
                event = XidEvent(index, uuid, int(data.eventData), self._clock())
                seen.append(event)
                self.history.append(event)
        return seen

    def recent(self, uuid: str, hold_seconds: float) -> list[XidEvent]:
        now = self._clock()
        return [e for e in self.history if e.uuid == uuid and now - e.seen_at <= hold_seconds]

    def close(self) -> None:
        if self._event_set is not None:
            self._nvml.nvmlEventSetFree(self._event_set)
            self._event_set = None


def check_xid(ctx: CheckContext, gpu: Gpu, monitor: XidMonitor, window: str) -> CheckResult:
    """Judge the events `monitor` saw for `gpu` within the hold window (`window` words it)."""
    i = gpu.index
    if i in monitor.unwatched:
        return CheckResult("xid", i, Status.OK, f"XIDs not watched: {monitor.unwatched[i]}", {"watched": 0.0})
    events = monitor.recent(gpu.identity.uuid, ctx.config.xid_hold_seconds)
    codes = sorted({e.xid for e in events})
    values = {"watched": 1.0, "events": float(len(events))}
    if not codes:
        return CheckResult("xid", i, Status.OK, f"no XID events {window}", values)
    fail_codes = set(ctx.config.thresholds.xid_fail_codes)
    described = "; ".join(f"XID {c} ({XID_MEANINGS.get(c, 'see NVIDIA XID catalogue')})" for c in codes)
    fatal = [c for c in codes if c in fail_codes]
    if fatal:
        return CheckResult(
            "xid",
            i,
            Status.FAIL,
            f"{len(events)} XID event(s) {window}: {described}; drain the node and reset the GPU, "
            "replace it if the XID returns",
            values,
        )
    return CheckResult(
        "xid",
        i,
        Status.WARN,
        f"{len(events)} XID event(s) {window}: {described}; check the workload's logs and dmesg",
        values,
    )
