"""The engine's waiting queue under vLLM's two scheduling policies (``--scheduling-policy``).

- ``fcfs``: arrival order; a preempted request goes back to the front.
- ``priority``: smallest ``priority`` first, then earliest arrival (vLLM's
  ``PriorityRequestQueue`` orders by ``(priority, arrival_time)``); a preempted request
  takes its place by the same key. Requests without a priority have 0.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterator
from typing import Generic, Literal, Protocol, TypeVar

__all__ = ["SchedulingPolicy", "WaitQueue"]

SchedulingPolicy = Literal["fcfs", "priority"]


class _Request(Protocol):
    @property
    def priority(self) -> int: ...

    @property
    def arrival_s(self) -> float: ...


class _Queued(Protocol):
    @property
    def req(self) -> _Request: ...


T = TypeVar("T", bound=_Queued)


class WaitQueue(Generic[T]):
    """Waiting sequences in the order the scheduler admits them."""

    def __init__(self, policy: SchedulingPolicy = "fcfs") -> None:
        self.policy = policy
        self._fifo: deque[T] = deque()
        self._sorted: list[tuple[int, float, int, T]] = []  # (priority, arrival, tie, seq)
        self._tie = itertools.count()

    def push(self, seq: T) -> None:
        if self.policy == "fcfs":
            self._fifo.append(seq)
        else:
            self._insert(seq)

    def push_preempted(self, seq: T) -> None:
        if self.policy == "fcfs":
            self._fifo.appendleft(seq)
        else:
            self._insert(seq)

    def _insert(self, seq: T) -> None:
        key = (seq.req.priority, seq.req.arrival_s, next(self._tie))
        bisect.insort(self._sorted, (*key, seq), key=lambda entry: entry[:3])

    def head(self) -> T:
        return self._fifo[0] if self.policy == "fcfs" else self._sorted[0][3]

    def pop_head(self) -> T:
        return self._fifo.popleft() if self.policy == "fcfs" else self._sorted.pop(0)[3]

    def remove(self, seq: T) -> None:
        if self.policy == "fcfs":
            self._fifo.remove(seq)
        else:
            self._sorted = [e for e in self._sorted if e[3] is not seq]

    def __len__(self) -> int:
        return len(self._fifo) if self.policy == "fcfs" else len(self._sorted)

    def __iter__(self) -> Iterator[T]:
        return iter(self._fifo) if self.policy == "fcfs" else (e[3] for e in self._sorted)
