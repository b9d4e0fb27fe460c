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

KV events (``record_events``): what vLLM's block pool reports to ``--kv-events-config``
subscribers, queued in ``events`` until the engine publishes them at the end of its step:
``BlockStored`` when blocks are registered (consecutive blocks of one chain in one event),
``BlockRemoved`` when a cached block is evicted, ``AllBlocksCleared`` when a reset empties
the cache. Our block hashes stand in for vLLM's (they are only keys to subscribers).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from runtime_components.common.kv_event_format import AllBlocksCleared, BlockRemoved, BlockStored, KVEvent

__all__ = ["BlockPool"]


class BlockPool:
    """``num_blocks`` KV blocks, reference counted, with an optional prefix cache."""

    def __init__(self, num_blocks: int, enable_prefix_caching: bool = True, *, block_size: int = 16,
                 record_events: bool = False) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.enable_prefix_caching = enable_prefix_caching
        self._ref = [0] * num_blocks
        self._hash_of: list[int | None] = [None] * num_blocks
        self._cached: dict[int, int] = {}  # block hash -> block id
        self._free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self.evictions = 0
        self.block_size = block_size
        self.events: list[KVEvent] | None = [] if record_events else None

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
                self._removed(old)
            self._ref[b] = 1
            out.append(b)
        return out

    def commit(self, block: int, block_hash: int, parent: int | None = None, tokens: Sequence[int] = (),
               lora_name: str | None = None) -> None:
        """Register a now-full block under its chained hash (first writer wins).

        ``parent`` (the previous block's hash, None for a first block), ``tokens`` and
        ``lora_name`` only describe the block in its ``BlockStored`` event."""
        if not self.enable_prefix_caching or self._hash_of[block] is not None:
            return
        if block_hash in self._cached:
            return  # another request computed the same prefix concurrently; keep theirs
        self._cached[block_hash] = block
        self._hash_of[block] = block_hash
        if self.events is not None:
            last = self.events[-1] if self.events else None
            if (isinstance(last, BlockStored) and parent is not None and last.block_hashes[-1] == parent
                    and last.lora_name == lora_name):  # the chain goes on: one event, as vLLM batches a request's blocks
                self.events[-1] = BlockStored(last.block_hashes + (block_hash,), last.parent_block_hash,
                                              last.token_ids + tuple(tokens), self.block_size, lora_name, "GPU")
            else:
                self.events.append(BlockStored((block_hash,), parent, tuple(tokens), self.block_size, lora_name, "GPU"))

    def take_events(self) -> list[KVEvent]:
        """The events since the last call (none when not recording)."""
        if not self.events:
            return []
        out, self.events = self.events, []
        return out

    def _removed(self, block_hash: int) -> None:
        if self.events is None:
            return
        last = self.events[-1] if self.events else None
        if isinstance(last, BlockRemoved):
            self.events[-1] = BlockRemoved(last.block_hashes + (block_hash,), "GPU")
        else:
            self.events.append(BlockRemoved((block_hash,), "GPU"))

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
                self._removed(h)
        if self.events is not None and not self._cached:  # nothing left: say so the way vLLM does
            while self.events and isinstance(self.events[-1], BlockRemoved):
                self.events.pop()
            self.events.append(AllBlocksCleared())
