"""Pure measures of a scaling history (used by `benchmarks/autoscaling.py`).

- scaling events: changes of the replica count, each (time, from, to);
- oscillations: direction reversals, i.e. consecutive events whose directions differ
  (up then down, or down then up) and that lie within `window_seconds` of each other.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["count_oscillations"]


def count_oscillations(events: Sequence[tuple[float, int, int]], window_seconds: float) -> int:
    """Direction reversals between consecutive scaling events at most `window_seconds` apart.

    >>> count_oscillations([(0, 1, 3), (60, 3, 2), (100, 2, 4), (1000, 4, 1)], 300)
    2
    """
    reversals = 0
    previous: tuple[float, int] | None = None
    for time, before, after in events:
        if after == before:
            continue
        direction = 1 if after > before else -1
        if previous is not None and direction != previous[1] and time - previous[0] <= window_seconds:
            reversals += 1
        previous = (time, direction)
    return reversals

