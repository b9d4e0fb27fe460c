"""Frozen metrics: a pod that answers its scrape with numbers that stopped moving is stale.

A wedged engine (its HTTP server alive, its engine loop stuck) keeps answering /metrics with
the same numbers: "5 requests running" forever. Read as fresh, that keeps replicas for
load that is not being served, and hides the failure. A pod is frozen when, for at least
``frozen_after_seconds``,

- its progress counters (every counter sample of the pod's metric dialect, all ``vllm:*_total``
  or all ``sglang:*_total``, plus the dialect's extra progress series from
  ``aibrix_spec.engine_metrics``: SGLang counts tokens only when a request finishes, so its
  inter-token-latency count, which moves with every output chunk, is watched too) have not
  moved while its metric says work is in flight (value > 0): a live engine with running
  requests produces tokens, so some counter moves; an idle engine (value 0) legitimately
  repeats itself and stays fresh; a page without such counters is not judged this way; or
- the exposition carries sample timestamps and the newest one has not advanced (an exporter
  re-serving a cached page).

Pure bookkeeping (the caller passes the time); one instance per scaling target.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrozenDetector", "PodSample"]


@dataclass(frozen=True)
class PodSample:
    """What one scrape of one pod showed."""

    value: float
    progress: tuple[float, ...]  # the dialect's progress values (counters ...), in exposition order
    timestamp: float | None  # newest sample timestamp in the page, if the page has any


@dataclass
class _Seen:
    progress: tuple[float, ...]
    progress_since: float
    timestamp: float | None
    timestamp_since: float


class FrozenDetector:
    """Remembers each pod's last progress and says when it stopped."""

    def __init__(self, frozen_after_seconds: float) -> None:
        self.frozen_after_seconds = frozen_after_seconds
        self._seen: dict[str, _Seen] = {}

    def check(self, pod: str, now: float, sample: PodSample) -> str | None:
        """None when the pod's sample is usable, else why it is frozen."""
        seen = self._seen.get(pod)
        if seen is None:
            self._seen[pod] = _Seen(sample.progress, now, sample.timestamp, now)
            return None
        if sample.progress != seen.progress or sample.value <= 0:
            seen.progress, seen.progress_since = sample.progress, now
        if sample.timestamp != seen.timestamp:
            seen.timestamp, seen.timestamp_since = sample.timestamp, now
        limit = self.frozen_after_seconds
        if sample.timestamp is not None and now - seen.timestamp_since >= limit:
            return f"frozen: sample timestamps stopped at {sample.timestamp:g} {now - seen.timestamp_since:.0f} s ago"
        if sample.progress and now - seen.progress_since >= limit:  # no counters: nothing to judge by
            return (f"frozen: metric reads {sample.value:g} but no counter moved for "
                    f"{now - seen.progress_since:.0f} s")
        return None

    def forget_except(self, pods: set[str]) -> None:
        """Drop pods that are gone (a replacement pod starts with a clean slate)."""
        for name in set(self._seen) - pods:
            del self._seen[name]
