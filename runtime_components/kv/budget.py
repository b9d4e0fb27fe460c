"""The member-wide budget of receive-buffer bytes, shared by every client connection.

A connection reserves a frame's announced length when its header arrives, before any
payload memory exists (the memory itself follows the bytes that arrive, see `framing`).
Reserving the announced length, not the bytes received so far, is what makes the budget
deadlock-free: a connection that got its reservation can always finish its frame, so the
budget always comes back. A connection that cannot get one is parked (its socket is not
read: the kernel's window pushes back on the client) and woken in arrival order, so a big
frame is not starved by a stream of small ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

__all__ = ["ReceiveBudget"]


class ReceiveBudget:
    """``limit`` bytes handed out by ``take`` and returned by ``give``; FIFO waiters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, Callable[[], None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def take(self, amount: int, on_granted: Callable[[], None]) -> bool:
        """Reserve ``amount`` now (True) or queue it: ``on_granted`` runs once it is reserved."""
        if not self._waiters and self.used + amount <= self.limit:
            self.used += amount
            return True
        self._waiters.append((amount, on_granted))
        return False

    def give(self, amount: int) -> None:
        self.used -= amount
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            amount, granted = self._waiters.popleft()
            self.used += amount
            granted()

    def cancel(self, on_granted: Callable[[], None]) -> None:
        """Forget a queued request (its connection closed while waiting)."""
        self._waiters = deque(w for w in self._waiters if w[1] is not on_granted)
        self.give(0)  # the head may have changed
