"""Paged KV-cache block pool with a prefix cache over chained block hashes.

Where it sits: ``EngineCore`` allocates blocks here for every scheduled token and asks it
for the longest cached prefix of a new prompt. It follows vLLM v1's block manager:

- every block has a reference count; a block with count 0 is *free* and sits in one LRU
  free queue whether or not it still holds a cached prefix;
- a full prompt block gets its chained hash registered (``commit``), so later prompts
  with the same prefix reuse it (``touch``) instead of recomputing it;
- allocating pops the least recently freed block; if that block still holds a cached
  prefix, the prefix is evicted then (LRU eviction of free cached blocks);
- a request frees its blocks in reverse order, so a prompt's tail blocks are evicted
  before its head, which more prompts share.

Usage, as vLLM reports it: ``1 - free_blocks / total_blocks`` (cached-but-free blocks
count as free: they can be reclaimed at once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["BlockPool"]


class BlockPool:
    """``num_blocks`` KV blocks, reference counted, with an optional prefix cache."""

    def __init__(self, num_blocks: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.enable_prefix_caching = enable_prefix_caching
        self._ref = [0] * num_blocks
        self._hash_of: list[int | None] = [None] * num_blocks
        self._cached: dict[int, int] = {}  # block hash -> block id
        self._free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self.evictions = 0

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        return 1.0 - len(self._free) / self.num_blocks

    @property
    def num_cached(self) -> int:
        return len(self._cached)

    def cached_prefix(self, hashes: Sequence[int]) -> list[int]:
        """Block ids of the longest leading run of ``hashes`` held in the cache."""
        if not self.enable_prefix_caching:
            return []
        out: list[int] = []
        for h in hashes:
            block = self._cached.get(h)
            if block is None:
                break
            out.append(block)
        return out

    def touch(self, blocks: Sequence[int]) -> None:
        """Take a reference on cached blocks a new request reuses."""
        for b in blocks:
            if self._ref[b] == 0:
                del self._free[b]
            self._ref[b] += 1

    def free_among(self, blocks: Sequence[int]) -> int:
        """How many of ``blocks`` are free (touching them takes them out of the free queue)."""
        return sum(1 for b in blocks if self._ref[b] == 0)

    def can_allocate(self, n: int) -> bool:
        return n <= len(self._free)

    def allocate(self, n: int) -> list[int]:
        """Take ``n`` fresh blocks (evicting cached prefixes as needed); caller checks room."""
        if n > len(self._free):
            raise RuntimeError(f"allocate({n}) with only {len(self._free)} free blocks; check can_allocate first")
        out: list[int] = []
        for _ in range(n):
            b, _unused = self._free.popitem(last=False)
            old = self._hash_of[b]
            if old is not None:
                del self._cached[old]
                self._hash_of[b] = None
                self.evictions += 1
            self._ref[b] = 1
            out.append(b)
        return out

    def commit(self, block: int, block_hash: int) -> None:
        """Register a now-full block under its chained hash (first writer wins)."""
        if not self.enable_prefix_caching or self._hash_of[block] is not None:
            return
        if block_hash in self._cached:
            return  # another request computed the same prefix concurrently; keep theirs
        self._cached[block_hash] = block
        self._hash_of[block] = block_hash

    def free(self, blocks: Sequence[int]) -> None:
        """Drop one reference on each block; tail blocks become evictable first."""
        for b in reversed(blocks):
            self._ref[b] -= 1
            if self._ref[b] == 0:
                self._free[b] = None
            elif self._ref[b] < 0:
                raise RuntimeError(f"block {b} freed more often than referenced")

    def reset_prefix_cache(self) -> None:
        """Forget every cached hash of a free block (vLLM's /reset_prefix_cache)."""
        for b in list(self._free):
            h = self._hash_of[b]
            if h is not None:
                del self._cached[h]
                self._hash_of[b] = None
