"""A byte-bounded key index driven by an eviction plugin: the pool's bookkeeping without data.

The server's block store wraps one (adding block memory); the simulated engines' in-process
pool adapter and the hit-ratio benchmark use it alone. Invariant: the sizes of resident keys
sum to `used_bytes <= capacity_bytes`; inserting evicts `policy.victim()` until the new key
fits. A key larger than the whole capacity is refused (returns None), never evicting others.

Hit ratio = hits / (hits + misses) over `lookup` calls; `contains` peeks without counting.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime_components.kv.eviction import EvictionPolicy, make_policy

__all__ = ["CacheStats", "SizedCache"]


@dataclass
class CacheStats:
    """Counters since creation."""

    hits: int = 0
    misses: int = 0
    inserts: int = 0
    evictions: int = 0
    rejected: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class SizedCache:
    """Resident keys with their sizes, bounded in bytes, evicting through a policy."""

    def __init__(self, capacity_bytes: int, policy: EvictionPolicy | str = "s3fifo", small_fraction: float = 0.1):
        if capacity_bytes <= 0:
            raise ValueError(f"capacity must be positive, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self.policy = make_policy(policy, capacity_bytes, small_fraction) if isinstance(policy, str) else policy
        self._sizes: dict[int, int] = {}
        self.used_bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._sizes)

    def contains(self, key: int) -> bool:
        """Is the key resident? Does not count as an access."""
        return key in self._sizes

    def lookup(self, key: int) -> bool:
        """Read access: a hit refreshes the key in the policy; returns whether it was resident."""
        if key in self._sizes:
            self.stats.hits += 1
            self.policy.touch(key)
            return True
        self.stats.misses += 1
        return False

    def insert(self, key: int, size: int, warm: bool = False) -> list[int] | None:
        """Make ``key`` resident; return the keys evicted for it, or None when it cannot fit.

        Inserting a resident key is a no-op (blocks are immutable: same hash, same content).
        ``warm``: the block extends a prefix that was just read (an admission hint).
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if key in self._sizes:
            return []
        if size > self.capacity_bytes:
            self.stats.rejected += 1
            return None
        evicted = self.evict_until(self.capacity_bytes - size)
        self._sizes[key] = size
        self.used_bytes += size
        self.policy.admit(key, size, warm)
        self.stats.inserts += 1
        return evicted

    def evict_until(self, limit_bytes: int) -> list[int]:
        """Evict through the policy until ``used_bytes <= limit_bytes``; return the victims.

        The block store calls this with a limit below the capacity to make room for memory it
        holds outside the index (blocks being written, evicted blocks still being read).
        """
        evicted: list[int] = []
        while self.used_bytes > max(0, limit_bytes) and self._sizes:
            victim = self.policy.victim()
            self.used_bytes -= self._sizes.pop(victim)
            evicted.append(victim)
        self.stats.evictions += len(evicted)
        return evicted

    def remove(self, key: int) -> bool:
        """Drop a key on the owner's initiative (not an eviction); returns whether it was resident."""
        size = self._sizes.pop(key, None)
        if size is None:
            return False
        self.used_bytes -= size
        self.policy.discard(key)
        return True

    def size_of(self, key: int) -> int | None:
        return self._sizes.get(key)
