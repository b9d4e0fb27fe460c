"""Eviction plugins of the KV-cache pool: adaptive (default), S3-FIFO, LRU and FIFO, by bytes.

A policy only orders keys; the owner (`cache.SizedCache`) decides *when* to evict (while the
bytes held plus the incoming block exceed the capacity) and asks `victim()` for the next key
to drop. Every method is O(1) amortised; queues are insertion-ordered dicts (head = newest
end, tail = oldest end).

S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP'23):

- a small FIFO S (``small_fraction`` of the capacity, 10%), a main FIFO M (the rest) and a
  ghost FIFO G holding keys only (bounded by M's bytes);
- each resident key carries a 2-bit frequency, +1 per hit, capped at 3;
- a new key goes to M if G remembers it (it was evicted from S too early), else to S;
- to evict: if S holds more than its share (or M is empty), take S's tail: accessed at least
  once -> move to M's head with frequency 0, otherwise drop it and remember it in G;
  else take M's tail: frequency > 0 -> reinsert at M's head with frequency - 1 (lazy
  promotion, like CLOCK), otherwise drop it.

One-hit keys (a scan) pass through S and never displace the hot set in M, which is why
S3-FIFO resists scans where LRU flushes its whole content.

Prefix-aware admission (our addition for KV blocks): ``admit(..., warm=True)`` marks a block
that extends a prefix which was just read (a chat turn appending to a history that hit).
Such a block enters S as if read once, so it moves to M instead of the ghost when it leaves
S. Chained prefixes make this evidence free; without it, canonical S3-FIFO loses up to ~23% of
LRU's hit ratio on multi-turn chat traces (recency-driven reuse), with it ~5%
(`benchmarks/kv.py`). LRU and FIFO ignore the hint.

Adaptive (the default): neither S3-FIFO nor LRU wins everywhere. S3-FIFO gains up to ~50%
over LRU on traces with scans or skewed popularity (Bird-SQL-like) and loses up to ~4% on
multi-turn chat, whose reuse is pure recency (LRU's best case; tuning S's share or the
frequency cap did not close it). `AdaptivePolicy` keeps both orders over the resident keys
and takes each victim from the one that is winning. The judge is two miniature caches, one
per policy, fed a hash-chosen 1/8 of the keys with 1/8 of the capacity (spatial sampling as
in SHARDS: a key is in or out of the sample for good, so each miniature sees the whole
reuse pattern of its keys); their hits decay by half every 8,192 sampled accesses. It starts
as LRU and switches only when the other policy's miniature scores 5% more (decayed) hits than
the followed one's: a switch reshuffles what is resident, so it must be worth it.
Deterministic: sampling is by key hash, not by a random draw.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from runtime_components.kv.members import mix64

__all__ = [
    "EVICTION_POLICIES",
    "AdaptivePolicy",
    "EvictionPolicy",
    "FifoPolicy",
    "LruPolicy",
    "S3FifoPolicy",
    "make_policy",
]

_MAX_FREQ = 3


class EvictionPolicy(Protocol):
    """Orders resident keys for eviction. The owner guarantees each call's precondition."""

    name: str

    def admit(self, key: int, size: int, warm: bool = False) -> None:
        """A key not resident before became resident (``warm``: it extends a prefix just read)."""

    def touch(self, key: int) -> None:
        """A resident key was read (a hit)."""

    def discard(self, key: int) -> None:
        """A resident key was removed by the owner (not by `victim`)."""

    def victim(self) -> int:
        """Choose a resident key to drop, forget it, and return it. Raises LookupError if none."""


class FifoPolicy:
    """Evict in insertion order; hits change nothing (the baseline every cache must beat)."""

    name = "fifo"

    def __init__(self, capacity_bytes: int) -> None:
        self._queue: OrderedDict[int, int] = OrderedDict()

    def admit(self, key: int, size: int, warm: bool = False) -> None:
        self._queue[key] = size

    def touch(self, key: int) -> None:
        return None

    def discard(self, key: int) -> None:
        self._queue.pop(key, None)

    def victim(self) -> int:
        if not self._queue:
            raise LookupError("fifo: nothing to evict")
        return self._queue.popitem(last=False)[0]


class LruPolicy:
    """Evict the least recently used key: every hit moves the key to the head."""

    name = "lru"

    def __init__(self, capacity_bytes: int) -> None:
        self._queue: OrderedDict[int, int] = OrderedDict()

    def admit(self, key: int, size: int, warm: bool = False) -> None:
        self._queue[key] = size

    def touch(self, key: int) -> None:
        self._queue.move_to_end(key)

    def discard(self, key: int) -> None:
        self._queue.pop(key, None)

    def victim(self) -> int:
        if not self._queue:
            raise LookupError("lru: nothing to evict")
        return self._queue.popitem(last=False)[0]


class S3FifoPolicy:
    """S3-FIFO by bytes: small probationary FIFO, main FIFO with 2-bit CLOCK, ghost keys."""

    name = "s3fifo"

    def __init__(self, capacity_bytes: int, small_fraction: float = 0.1) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"s3fifo: capacity must be positive, got {capacity_bytes}")
        if not 0.0 < small_fraction < 1.0:
            raise ValueError(f"s3fifo: small_fraction must be in (0, 1), got {small_fraction}")
        self._small_target = max(1, int(capacity_bytes * small_fraction))
        self._ghost_limit = max(1, capacity_bytes - self._small_target)
        self._small: OrderedDict[int, int] = OrderedDict()  # key -> size
        self._main: OrderedDict[int, int] = OrderedDict()
        self._ghost: OrderedDict[int, int] = OrderedDict()
        self._size: dict[int, int] = {}
        self._freq: dict[int, int] = {}
        self._small_bytes = 0
        self._ghost_bytes = 0

    def admit(self, key: int, size: int, warm: bool = False) -> None:
        self._size[key] = size
        self._freq[key] = 1 if warm else 0
        if key in self._ghost:  # evicted from S before it could prove itself: straight to M
            self._ghost_bytes -= self._ghost.pop(key)
            self._main[key] = size
        else:
            self._small[key] = size
            self._small_bytes += size

    def touch(self, key: int) -> None:
        freq = self._freq[key]
        if freq < _MAX_FREQ:
            self._freq[key] = freq + 1

    def discard(self, key: int) -> None:
        size = self._size.pop(key, None)
        if size is None:
            return
        del self._freq[key]
        if self._small.pop(key, None) is not None:
            self._small_bytes -= size
        else:
            self._main.pop(key, None)

    def victim(self) -> int:
        while self._small or self._main:
            if self._small and (self._small_bytes > self._small_target or not self._main):
                key, size = self._small.popitem(last=False)
                self._small_bytes -= size
                if self._freq[key] >= 1:
                    self._freq[key] = 0
                    self._main[key] = size
                    continue
                self._remember(key, size)
                return self._forget(key)
            key, size = self._main.popitem(last=False)
            if self._freq[key] > 0:
                self._freq[key] -= 1
                self._main[key] = size
                continue
            return self._forget(key)
        raise LookupError("s3fifo: nothing to evict")

    def _remember(self, key: int, size: int) -> None:
        self._ghost[key] = size
        self._ghost_bytes += size
        while self._ghost_bytes > self._ghost_limit and self._ghost:
            self._ghost_bytes -= self._ghost.popitem(last=False)[1]

    def _forget(self, key: int) -> int:
        del self._size[key]
        del self._freq[key]
        return key

    def queues(self) -> tuple[list[int], list[int], list[int]]:
        """(small, main, ghost) keys from tail (next out) to head: for tests and debugging."""
        return list(self._small), list(self._main), list(self._ghost)


class _Miniature:
    """A key-only cache driven by one policy: scores that policy on a sample of the keys."""

    def __init__(self, policy: EvictionPolicy, capacity_bytes: int) -> None:
        self.policy = policy
        self.capacity_bytes = capacity_bytes
        self.sizes: dict[int, int] = {}
        self.used = 0

    def access(self, key: int, size: int, warm: bool) -> bool:
        """Read ``key``, inserting it on a miss; returns whether it hit."""
        if key in self.sizes:
            self.policy.touch(key)
            return True
        if size <= self.capacity_bytes:
            while self.used + size > self.capacity_bytes:
                self.used -= self.sizes.pop(self.policy.victim())
            self.sizes[key] = size
            self.used += size
            self.policy.admit(key, size, warm)
        return False


class AdaptivePolicy:
    """LRU or S3-FIFO, whichever a miniature simulation of each shows winning (see module doc)."""

    name = "adaptive"
    SAMPLE_SHIFT = 3  #: 1 key in 8 feeds the miniatures
    HALF_LIFE = 8192  #: sampled accesses after which past hits count half
    MARGIN = 0.05  #: S3-FIFO must beat LRU by this fraction to be followed

    def __init__(self, capacity_bytes: int, small_fraction: float = 0.1) -> None:
        self._lru = LruPolicy(capacity_bytes)
        self._s3 = S3FifoPolicy(capacity_bytes, small_fraction)
        mini = max(1, capacity_bytes >> self.SAMPLE_SHIFT)
        self._minis = (_Miniature(LruPolicy(mini), mini), _Miniature(S3FifoPolicy(mini, small_fraction), mini))
        self._mask = (1 << self.SAMPLE_SHIFT) - 1
        self.scores = [0.0, 0.0]  #: decayed miniature hits: [lru, s3fifo]
        self.following = "lru"
        self.switches = 0
        self._sampled = 0

    def admit(self, key: int, size: int, warm: bool = False) -> None:
        self._lru.admit(key, size, warm)
        self._s3.admit(key, size, warm)
        self._judge(key, size, warm)

    def touch(self, key: int) -> None:
        self._lru.touch(key)
        self._s3.touch(key)
        self._judge(key, self._lru._queue[key], False)

    def discard(self, key: int) -> None:
        self._lru.discard(key)
        self._s3.discard(key)

    def victim(self) -> int:
        if not self._lru._queue:
            raise LookupError("adaptive: nothing to evict")
        if self.following == "lru":
            key = self._lru.victim()
            self._s3.discard(key)
        else:
            key = self._s3.victim()
            self._lru.discard(key)
        return key

    def _judge(self, key: int, size: int, warm: bool) -> None:
        if mix64(key) & self._mask:  # not in the sample
            return
        for i, mini in enumerate(self._minis):
            if mini.access(key, size, warm):
                self.scores[i] += 1.0
        self._sampled += 1
        if self._sampled % self.HALF_LIFE == 0:
            self.scores = [score / 2 for score in self.scores]
        lru, s3 = self.scores
        challenger, followed = (s3, lru) if self.following == "lru" else (lru, s3)
        if challenger > followed * (1 + self.MARGIN) + 1:
            self.following = "s3fifo" if self.following == "lru" else "lru"
            self.switches += 1


PolicyFactory = Callable[[int, float], EvictionPolicy]

#: The one registry: policy name as written in the config -> factory(capacity, small_fraction).
EVICTION_POLICIES: dict[str, PolicyFactory] = {
    "adaptive": lambda capacity, small: AdaptivePolicy(capacity, small),
    "s3fifo": lambda capacity, small: S3FifoPolicy(capacity, small),
    "lru": lambda capacity, small: LruPolicy(capacity),
    "fifo": lambda capacity, small: FifoPolicy(capacity),
}


def make_policy(name: str, capacity_bytes: int, small_fraction: float = 0.1) -> EvictionPolicy:
    """Build a policy by its config name; ValueError lists the known names."""
    try:
        factory = EVICTION_POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown eviction policy {name!r}; expected one of: {', '.join(EVICTION_POLICIES)}") from None
    return factory(capacity_bytes, small_fraction)
