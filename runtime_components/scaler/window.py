"""Sliding window of one-second buckets: the metric history every policy averages over.

A sample recorded at time `t` lands in bucket `floor(t)`; several samples in the same second
are averaged (one scrape round = one total per second). The average over the last `W` seconds
at time `now` is the mean of the bucket values whose second lies in `(now - W, now]`:

    average(now, W) = sum(v_b for b in window) / count(b in window)

Buckets older than the longest window anyone asks for are dropped, so memory stays bounded.
"""

from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """Per-second buckets of one metric, averaged over any window up to `retention_seconds`."""

    def __init__(self, retention_seconds: float) -> None:
        if retention_seconds <= 0:
            raise ValueError(f"retention_seconds must be positive, got {retention_seconds}")
        self._retention = retention_seconds
        self._buckets: OrderedDict[int, tuple[float, int]] = OrderedDict()
        self._newest_time: float | None = None

    def record(self, now: float, value: float) -> None:
        """Add one sample taken at `now` (seconds; must not go backwards by more than a bucket)."""
        second = math.floor(now)
        total, count = self._buckets.get(second, (0.0, 0))
        self._buckets[second] = (total + value, count + 1)
        if self._newest_time is None or now > self._newest_time:
            self._newest_time = now
        self._drop_older_than(now - self._retention - 1)

    def average(self, now: float, window_seconds: float) -> float | None:
        """Mean of the bucket values in (now - window, now]; None when the window is empty."""
        first = math.floor(now - window_seconds) + 1
        last = math.floor(now)
        values = [total / count for second, (total, count) in self._buckets.items() if first <= second <= last]
        if not values:
            return None
        return sum(values) / len(values)

    def newest_sample_time(self) -> float | None:
        """Time of the most recent sample, or None when nothing was recorded yet."""
        return self._newest_time

    def __len__(self) -> int:
        return len(self._buckets)

    def _drop_older_than(self, horizon: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets))
            if oldest >= horizon:
                break
            self._buckets.popitem(last=False)
