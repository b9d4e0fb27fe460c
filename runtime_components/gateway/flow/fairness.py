"""Order between users (flows) inside one priority band.

Two disciplines, one small interface (``push``, ``peek``, ``pop``, ``remove``, ``__len__``):

- ``VirtualTimeFair`` (default): start-time fair queueing. Each request is charged its token
  budget (prompt tokens + max_tokens, known before it runs); a flow's next request starts at
  ``max(band virtual time, the flow's last finish tag)``, and the request with the smallest
  start tag goes first. A user sending ten times the tokens gets the same share of dispatches
  weighted by size, so a tenant cannot win by sending fewer, larger requests.
- ``RoundRobinFair``: one request per active flow in turn; simpler, counts requests only.

Within one flow the order is arrival (FIFO).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Fairness", "Held", "RoundRobinFair", "VirtualTimeFair", "build_fairness"]


@dataclass(eq=False)
class Held:
    """One queued request, as the queue sees it."""

    flow: str  #: the user (fairness is between users)
    priority: int
    cost: float  #: token budget (prompt + max_tokens), at least 1
    seq: int  #: arrival order, unique per model
    start_tag: float = 0.0
    payload: object = field(default=None, repr=False)


class Fairness(Protocol):
    def push(self, item: Held) -> None: ...

    def peek(self) -> Held: ...

    def pop(self) -> Held: ...

    def in_order(self) -> list[str]:
        """The flows with a request held, in the order ``pop`` would serve their heads."""
        ...

    def peek_flow(self, flow: str) -> Held: ...

    def pop_flow(self, flow: str) -> Held:
        """The head of ``flow``, taken as ``pop`` would take it (the turn or the clock advances)."""
        ...

    def remove(self, item: Held) -> bool: ...

    def newest(self) -> Held: ...

    def flows(self) -> list[str]: ...

    def __len__(self) -> int: ...


class _Flows:
    """Per-flow FIFO deques plus a count; shared by both disciplines."""

    def __init__(self) -> None:
        self.flows: OrderedDict[str, deque[Held]] = OrderedDict()
        self.size = 0

    def append(self, item: Held) -> None:
        self.flows.setdefault(item.flow, deque()).append(item)
        self.size += 1

    def popleft(self, flow: str) -> Held:
        queue = self.flows[flow]
        item = queue.popleft()
        if not queue:
            del self.flows[flow]
        self.size -= 1
        return item

    def remove(self, item: Held) -> bool:
        queue = self.flows.get(item.flow)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self.flows[item.flow]
        self.size -= 1
        return True

    def newest(self) -> Held:
        return max((q[-1] for q in self.flows.values()), key=lambda h: h.seq)


class RoundRobinFair:
    """Active flows take turns, one request each."""

    def __init__(self) -> None:
        self._flows = _Flows()

    def push(self, item: Held) -> None:
        self._flows.append(item)  # a new flow joins at the end of the turn order

    def peek(self) -> Held:
        return self._flows.flows[next(iter(self._flows.flows))][0]

    def pop(self) -> Held:
        return self.pop_flow(next(iter(self._flows.flows)))

    def in_order(self) -> list[str]:
        return list(self._flows.flows)

    def peek_flow(self, flow: str) -> Held:
        return self._flows.flows[flow][0]

    def pop_flow(self, flow: str) -> Held:
        item = self._flows.popleft(flow)
        if flow in self._flows.flows:
            self._flows.flows.move_to_end(flow)
        return item

    def remove(self, item: Held) -> bool:
        return self._flows.remove(item)

    def newest(self) -> Held:
        return self._flows.newest()

    def flows(self) -> list[str]:
        return list(self._flows.flows)

    def __len__(self) -> int:
        return self._flows.size


class VirtualTimeFair:
    """Start-time fair queueing over token budgets."""

    def __init__(self) -> None:
        self._flows = _Flows()
        self._vtime = 0.0
        self._finish: dict[str, float] = {}  # last finish tag per flow (dropped when the flow idles)

    def push(self, item: Held) -> None:
        start = max(self._vtime, self._finish.get(item.flow, 0.0))
        item.start_tag = start
        self._finish[item.flow] = start + item.cost
        self._flows.append(item)

    def _next_flow(self) -> str:
        return min(self._flows.flows, key=lambda f: (self._flows.flows[f][0].start_tag, self._flows.flows[f][0].seq))

    def peek(self) -> Held:
        return self._flows.flows[self._next_flow()][0]

    def pop(self) -> Held:
        return self.pop_flow(self._next_flow())

    def in_order(self) -> list[str]:
        return sorted(self._flows.flows, key=lambda f: (self._flows.flows[f][0].start_tag, self._flows.flows[f][0].seq))

    def peek_flow(self, flow: str) -> Held:
        return self._flows.flows[flow][0]

    def pop_flow(self, flow: str) -> Held:
        item = self._flows.popleft(flow)
        self._vtime = max(self._vtime, item.start_tag)
        self._forget_idle()
        return item

    def remove(self, item: Held) -> bool:
        removed = self._flows.remove(item)
        self._forget_idle()
        return removed

    def _forget_idle(self) -> None:
        # A flow with nothing queued and a finish tag behind the clock starts fresh anyway.
        for flow in [f for f, tag in self._finish.items() if f not in self._flows.flows and tag <= self._vtime]:
            del self._finish[flow]

    def newest(self) -> Held:
        return self._flows.newest()

    def flows(self) -> list[str]:
        return list(self._flows.flows)

    def __len__(self) -> int:
        return self._flows.size


def build_fairness(kind: str) -> Fairness:
    if kind == "round-robin":
        return RoundRobinFair()
    if kind == "virtual-time":
        return VirtualTimeFair()
    raise ValueError(f'unknown fairness "{kind}"; expected round-robin or virtual-time')
