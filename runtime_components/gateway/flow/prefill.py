"""Where a light user's prompt starts soonest: the engines this gateway sent the fewest prompt
tokens to in the last moment.

Why: an engine that is busy prefilling runs long steps (a step with a full token budget of
prompts takes several times a decode-only step), and a request that arrives meanwhile waits
for that step to end and then shares the next one. Under contention, a light user's time to
first token is set by exactly that wait (``benchmarks.flow_control``). The gateway cannot see
an engine's steps, but it knows what it sent: prompt tokens sent in the last ``window_s``
are, roughly, the prefill work still in the engine. The window is about one long prefill step
(measured on the benchmark: 0.25 s and 0.5 s serve the light user equally well, 1 s much worse,
as it then counts prompts long done).

Only flow control's light users are steered (their own share of the fleet is small, so this
moves little load); everyone else is routed by the model's policy as before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from ..policy.types import EndpointState

__all__ = ["PREFILL_WINDOW_S", "RecentPrefill"]

PREFILL_WINDOW_S = 0.5


class RecentPrefill:
    """Prompt tokens sent to each endpoint within the last ``window_s`` (event-loop owned).

    Memory is bounded by the window: an endpoint's entries expire as they are read or added."""

    def __init__(self, window_s: float = PREFILL_WINDOW_S) -> None:
        self.window_s = window_s
        self._sent: dict[str, deque[tuple[float, int]]] = {}
        self._total: dict[str, int] = {}

    def add(self, address: str, tokens: int, now: float) -> None:
        """``tokens`` prompt tokens went to ``address`` at ``now``."""
        sent = self._sent.get(address)
        if sent is None:
            sent = self._sent[address] = deque()
            self._total[address] = 0
        self._expire(address, sent, now)
        sent.append((now, tokens))
        self._total[address] += tokens

    def tokens(self, address: str, now: float) -> int:
        """Prompt tokens sent to ``address`` within the window before ``now``."""
        sent = self._sent.get(address)
        if sent is None:
            return 0
        self._expire(address, sent, now)
        total = self._total[address]
        if not sent:  # nothing recent: forget the endpoint (it may be gone for good)
            del self._sent[address], self._total[address]
        return total

    def lightest(self, endpoints: Sequence[EndpointState], now: float) -> list[EndpointState]:
        """The endpoints with the fewest recent prompt tokens (all of them when they tie)."""
        if len(endpoints) < 2:
            return list(endpoints)
        loads = [self.tokens(e.address, now) for e in endpoints]
        least = min(loads)
        return [e for e, load in zip(endpoints, loads, strict=True) if load == least]

    def _expire(self, address: str, sent: deque[tuple[float, int]], now: float) -> None:
        horizon = now - self.window_s
        while sent and sent[0][0] <= horizon:
            self._total[address] -= sent.popleft()[1]
