"""The block store of one pool member: index + eviction (`SizedCache`) over a page heap.

Blocks are immutable (a chained prefix hash names exactly one content), so a put of a
resident key is acknowledged as PRESENT without copying. Memory accounting, in bytes of
whole pages:

    heap pages in use * page = index.used_bytes + outside_bytes
    outside_bytes = reservations (shared-memory writes not yet committed)
                  + zombies (blocks evicted while a shared-memory reader still holds them)

Before taking pages the store evicts until `index.used_bytes <= heap.size - outside - need`,
so the index never promises memory the heap does not have. Zombie pages return to the heap
when their last reader releases them.

Checksums are zlib CRC-32 of the block bytes (hardware-agnostic, ~4 GB/s here, in the
standard library; it detects every burst error up to 32 bits, which is what a torn or
misdirected write produces; it is not a defence against an attacker, nor meant to be). A
block written over TCP carries the sender's CRC and is verified before it is stored. A
block written through shared memory may arrive without one (the bytes never crossed a
wire); its CRC is then computed on the first TCP read that needs it and kept.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from runtime_components.kv.cache import SizedCache
from runtime_components.kv.heap import HeapFull, PageHeap

__all__ = ["Block", "BlockStore", "PutStatus", "StoreCounters"]


class PutStatus:
    """Per-block outcome of a put (the protocol sends these codes)."""

    STORED = 0
    PRESENT = 1
    CORRUPT = 2
    NO_SPACE = 3
    TOO_LARGE = 4
    NAMES = {0: "stored", 1: "present", 2: "checksum mismatch", 3: "no space", 4: "too large"}


@dataclass
class Block:
    """One block's place in the heap."""

    pages: list[int]
    length: int
    crc: int | None
    pins: int = 0
    warm: bool = False  #: admission hint: extends a prefix that was just read
    zombie: bool = False  #: evicted while pinned: pages return at the last unpin


@dataclass
class StoreCounters:
    """Monotonic counters exported as Prometheus metrics."""

    checksum_errors: int = 0
    no_space: int = 0
    bytes_written: int = 0
    bytes_read: int = 0
    puts: dict[int, int] = field(default_factory=lambda: {code: 0 for code in PutStatus.NAMES})


class BlockStore:
    """Blocks keyed by 64-bit prefix hashes, bounded in bytes, evicting through a policy."""

    def __init__(
        self,
        capacity_bytes: int,
        page_bytes: int,
        *,
        policy: str = "s3fifo",
        small_fraction: float = 0.1,
        max_block_bytes: int = 64 << 20,
        shm_dir: str | None = None,
    ) -> None:
        self.heap = PageHeap(capacity_bytes, page_bytes, shm_dir)
        self.index = SizedCache(self.heap.size, policy, small_fraction)
        self.max_block_bytes = max_block_bytes
        self.blocks: dict[int, Block] = {}
        self.outside_bytes = 0
        self.counters = StoreCounters()

    # -- reads -------------------------------------------------------------------------------

    def exists(self, key: int) -> bool:
        """Is the block resident? Not an access: prefix probes must not distort eviction."""
        return key in self.blocks

    def lookup(self, key: int) -> Block | None:
        """A read access (counts a hit or miss, refreshes the block's eviction rank)."""
        if self.index.lookup(key):
            return self.blocks[key]
        return None

    def read(self, key: int) -> tuple[bytes, int] | None:
        """Bytes and CRC of a block for the TCP path, or None on a miss."""
        block = self.lookup(key)
        if block is None:
            return None
        data = self.heap.read(block.pages, block.length)
        if block.crc is None:
            block.crc = zlib.crc32(data)
        self.counters.bytes_read += block.length
        return data, block.crc

    def checksum(self, block: Block) -> int:
        """CRC-32 of a block's bytes as they are now."""
        return zlib.crc32(self.heap.read(block.pages, block.length))

    def pin(self, block: Block) -> None:
        block.pins += 1

    def unpin(self, block: Block) -> None:
        block.pins -= 1
        if block.pins == 0 and block.zombie:
            self._free_outside(block)

    # -- writes ------------------------------------------------------------------------------

    def put(self, key: int, data: memoryview | bytes, crc: int | None, warm: bool = False) -> int:
        """Store a block received over TCP; verify its CRC first. Returns a PutStatus code."""
        status = self._put(key, data, crc, warm)
        self.counters.puts[status] += 1
        return status

    def _put(self, key: int, data: memoryview | bytes, crc: int | None, warm: bool) -> int:
        if key in self.blocks:
            return PutStatus.PRESENT
        if len(data) > self.max_block_bytes or self.heap.pages_for(len(data)) > self.heap.n_pages:
            return PutStatus.TOO_LARGE
        if crc is not None and zlib.crc32(data) != crc:
            self.counters.checksum_errors += 1
            return PutStatus.CORRUPT
        pages = self._take_pages(len(data))
        if pages is None:
            return PutStatus.NO_SPACE
        self.heap.write(pages, data)
        self._index(key, Block(pages, len(data), crc, warm=warm))
        return PutStatus.STORED

    def reserve(self, key: int, length: int, warm: bool = False) -> tuple[int, Block | None]:
        """Pages a shared-memory client will fill; invisible to readers until `commit`."""
        if key in self.blocks:
            return PutStatus.PRESENT, None
        if length > self.max_block_bytes or self.heap.pages_for(length) > self.heap.n_pages:
            return PutStatus.TOO_LARGE, None
        pages = self._take_pages(length)
        if pages is None:
            return PutStatus.NO_SPACE, None
        block = Block(pages, length, None, warm=warm)
        self.outside_bytes += self._bytes_of(block)
        return PutStatus.STORED, block

    def commit(self, key: int, block: Block, crc: int | None, *, verify: bool) -> int:
        """Publish a reserved block (after the client wrote its pages)."""
        self.outside_bytes -= self._bytes_of(block)
        status = PutStatus.STORED
        if key in self.blocks:
            status = PutStatus.PRESENT
        elif verify and crc is not None:
            data = self.heap.read(block.pages, block.length)
            if zlib.crc32(data) != crc:
                self.counters.checksum_errors += 1
                status = PutStatus.CORRUPT
        if status != PutStatus.STORED:
            self.heap.release(block.pages)
        else:
            block.crc = crc
            self._index(key, block)
        self.counters.puts[status] += 1
        return status

    def abort(self, block: Block) -> None:
        """Return a reservation that will never be committed (client gone)."""
        self.outside_bytes -= self._bytes_of(block)
        self.heap.release(block.pages)

    def remove(self, key: int) -> bool:
        block = self.blocks.pop(key, None)
        if block is None:
            return False
        self.index.remove(key)
        self._drop(block)
        return True

    # -- memory ------------------------------------------------------------------------------

    def _bytes_of(self, block: Block) -> int:
        return len(block.pages) * self.heap.page_bytes

    def _take_pages(self, length: int) -> list[int] | None:
        need = self.heap.pages_for(length) * self.heap.page_bytes
        # Evicting a pinned block frees no page (it turns into a zombie): evict again until
        # the index fits beside everything held outside it.
        while victims := self.index.evict_until(self.heap.size - self.outside_bytes - need):
            for victim in victims:
                self._drop(self.blocks.pop(victim))
        try:
            return self.heap.allocate(length)
        except HeapFull:
            # Only zombies (evicted blocks still being read) can hold the rest: refuse, do not wait.
            self.counters.no_space += 1
            return None

    def _index(self, key: int, block: Block) -> None:
        evicted = self.index.insert(key, self._bytes_of(block), block.warm)
        if evicted is None:  # cannot happen: _take_pages made room; keep the heap consistent anyway
            self.heap.release(block.pages)
            return
        for victim in evicted:
            self._drop(self.blocks.pop(victim))
        self.blocks[key] = block
        self.counters.bytes_written += block.length

    def _drop(self, block: Block) -> None:
        if block.pins:
            block.zombie = True
            self.outside_bytes += self._bytes_of(block)
        else:
            self.heap.release(block.pages)

    def _free_outside(self, block: Block) -> None:
        self.outside_bytes -= self._bytes_of(block)
        self.heap.release(block.pages)

    def pages_in_use(self) -> int:
        return self.heap.n_pages - self.heap.free_pages

    def close(self) -> None:
        self.heap.close()
