"""Provisional prefix entries: a routing decision stands in for the engine's KV events, briefly.

In ``kv-events`` mode the prefix index holds what engines report (``BlockStored``), which
arrives only after the engine has computed the prompt. Until then a burst of requests for
one new prefix would see no holder and scatter over the fleet; so each decision adds its
blocks here, and they expire ``ttl_s`` later (by then the events have taken over, or the
engine never stored them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["BlockIndex", "ProvisionalIndex"]


class BlockIndex(Protocol):
    """What ``prefix.PrefixIndex`` offers (passed in, so this module does not import it)."""

    def __len__(self) -> int: ...
    def add(self, hashes: Sequence[int], address: str) -> None: ...
    def remove(self, hashes: Sequence[int], address: str) -> None: ...
    def forget(self, address: str) -> None: ...
    def matched_blocks(self, hashes: Sequence[int], addresses: Sequence[str]) -> dict[str, int]: ...
    def holders_deepest_first(self, hashes: Sequence[int], limit: int) -> list[str]: ...


class ProvisionalIndex:
    """A block index (an empty ``PrefixIndex``) whose entries expire ``ttl_s`` after they were last added."""

    def __init__(self, index: BlockIndex, ttl_s: float, clock: Callable[[], float]) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self._index = index
        self._ttl = ttl_s
        self.clock = clock
        self._expiry: dict[tuple[int, str], float] = {}  # latest expiry of each (block, endpoint)
        self._queue: deque[tuple[float, Sequence[int], str]] = deque()

    def __len__(self) -> int:
        self._expire()
        return len(self._index)

    def add(self, hashes: Sequence[int], address: str) -> None:
        self._expire()
        until = self.clock() + self._ttl
        for h in hashes:
            self._expiry[(h, address)] = until
        self._queue.append((until, hashes, address))
        self._index.add(hashes, address)

    def matched_blocks(self, hashes: Sequence[int], addresses: Sequence[str]) -> dict[str, int]:
        self._expire()
        return self._index.matched_blocks(hashes, addresses)

    def holders_deepest_first(self, hashes: Sequence[int], limit: int) -> list[str]:
        self._expire()
        return self._index.holders_deepest_first(hashes, limit)

    def remove(self, hashes: Sequence[int], address: str) -> None:
        for h in hashes:
            self._expiry.pop((h, address), None)
        self._index.remove(hashes, address)

    def forget(self, address: str) -> None:
        for key in [k for k in self._expiry if k[1] == address]:
            del self._expiry[key]
        self._index.forget(address)

    def _expire(self) -> None:
        now = self.clock()
        while self._queue and self._queue[0][0] <= now:
            until, hashes, address = self._queue.popleft()
            # a later add of the same block renewed it: only entries still due at ``until`` go
            gone = [h for h in hashes if self._expiry.get((h, address)) == until]
            for h in gone:
                del self._expiry[(h, address)]
            self._index.remove(gone, address)
