"""Sliding-window-counter arithmetic (pure; no clock, no I/O).

Time is cut into fixed windows of length W. Each (user, metric) keeps two integers: the
count of the current window ``curr`` and of the previous one ``prev``. At fraction
``f`` (0 <= f < 1) through the current window the rate over the last W seconds is
estimated as

    estimate = prev * (1 - f) + curr

which assumes the previous window's events were spread evenly. A request of cost c is
admitted when ``estimate + c <= limit``. Why this algorithm: O(1) state per key (two
counters, unlike a sliding log), no burst of 2x at window edges (unlike fixed windows),
and both the check and the increment fit one atomic Redis script, so replicas share it.

When refused, :func:`retry_after_s` finds the earliest moment the estimate leaves room for
c, assuming no further admissions: still inside this window when the decaying ``prev``
frees enough, else in the next window where ``curr`` becomes the decaying term.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WindowCounts", "estimate", "retry_after_s", "window_index"]


@dataclass(frozen=True)
class WindowCounts:
    """Counts of the current and the previous window, and how far into the current one we are."""

    prev: float
    curr: float
    fraction: float  # 0 <= fraction < 1


def window_index(now_s: float, window_s: float) -> tuple[int, float]:
    """Return (index of the window holding ``now_s``, fraction of it elapsed)."""
    index = int(now_s // window_s)
    return index, (now_s - index * window_s) / window_s


def estimate(counts: WindowCounts) -> float:
    """Events in the last window length, per the sliding-window-counter approximation."""
    return counts.prev * (1.0 - counts.fraction) + counts.curr


def retry_after_s(counts: WindowCounts, cost: float, limit: float, window_s: float) -> float:
    """Seconds until ``estimate + cost <= limit`` holds again (0 if it holds now).

    >>> retry_after_s(WindowCounts(prev=0, curr=10, fraction=0.5), 1, 10, 60)
    36.0
    """
    room = limit - cost
    if room < 0:
        raise ValueError(f"a cost of {cost} can never fit a limit of {limit}")
    if estimate(counts) <= room:
        return 0.0
    # Inside the current window only prev decays: prev * (1 - f - d/W) + curr <= room.
    if counts.curr <= room and counts.prev > 0:
        d = window_s * (1.0 - counts.fraction - (room - counts.curr) / counts.prev)
        if d <= window_s * (1.0 - counts.fraction):
            return max(0.0, d)
    # In the next window curr becomes prev: curr * (1 - g) <= room, g = fraction into it.
    to_next = window_s * (1.0 - counts.fraction)
    g = 0.0 if counts.curr <= room else 1.0 - room / counts.curr
    return to_next + window_s * g
