"""Block memory of one pool member: a page heap in one memory mapping.

The member's capacity is one mapping cut into fixed pages (`pageSize`); a block occupies
ceil(len / page) pages, not necessarily contiguous, listed in order. Fixed pages make
freeing O(pages) and fragmentation impossible; the cost is at most one partly used page per
block (keep blocks >> page size; KV blocks are 64 KiB-4 MiB).

When the shared-memory fast path is on, the mapping is a file on a tmpfs (`/dev/shm` or a
Memory emptyDir) that same-node clients map too: a client then copies a block straight
between its own buffer and the pages the server names (one copy, no socket). Otherwise it is
an anonymous mapping. Either way the kernel commits pages on first touch, so a large
capacity costs nothing until filled. The file is created 0600 and unlinked on close.
"""

from __future__ import annotations

import mmap
import os
import secrets
from pathlib import Path

__all__ = ["HeapFull", "PageHeap", "page_slices"]


class HeapFull(Exception):
    """No free pages for the block (all pages hold blocks, or are pinned by readers)."""


def page_slices(pages: list[int], length: int, page_bytes: int) -> list[tuple[int, int]]:
    """(offset, length) of each piece of a ``length``-byte block stored in ``pages``.

    >>> page_slices([3, 0], 100, 64)
    [(192, 64), (0, 36)]
    """
    out = []
    remaining = length
    for page in pages:
        take = min(page_bytes, remaining)
        out.append((page * page_bytes, take))
        remaining -= take
    return out


class PageHeap:
    """A fixed set of pages in one mapping, with a free list."""

    def __init__(self, capacity_bytes: int, page_bytes: int, shm_dir: str | None = None) -> None:
        if page_bytes <= 0 or capacity_bytes < page_bytes:
            raise ValueError(f"capacity {capacity_bytes} must hold at least one page of {page_bytes} bytes")
        self.page_bytes = page_bytes
        self.n_pages = capacity_bytes // page_bytes
        self.size = self.n_pages * page_bytes
        self.path: str | None = None
        if shm_dir is None:
            self._map = mmap.mmap(-1, self.size)
        else:
            path = Path(shm_dir) / f"aibrix-kv-{os.getpid()}-{secrets.token_hex(6)}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, self.size)
                self._map = mmap.mmap(fd, self.size)
            except OSError:
                os.unlink(path)
                raise
            finally:
                os.close(fd)
            self.path = str(path)
        self.view = memoryview(self._map)
        # Pop from the end: low pages are handed out first, which keeps touched memory compact.
        self._free = list(range(self.n_pages - 1, -1, -1))

    @property
    def free_pages(self) -> int:
        return len(self._free)

    def pages_for(self, length: int) -> int:
        return max(1, -(-length // self.page_bytes))

    def allocate(self, length: int) -> list[int]:
        """Pages for a ``length``-byte block; raises HeapFull when too few are free."""
        need = self.pages_for(length)
        if need > len(self._free):
            raise HeapFull(f"need {need} pages, {len(self._free)} free")
        pages = self._free[-need:]
        del self._free[-need:]
        pages.reverse()
        return pages

    def release(self, pages: list[int]) -> None:
        self._free.extend(pages)

    def write(self, pages: list[int], data: memoryview | bytes) -> None:
        """Copy a block's bytes into its pages."""
        src = memoryview(data).cast("B")
        pos = 0
        for offset, take in page_slices(pages, len(src), self.page_bytes):
            self.view[offset : offset + take] = src[pos : pos + take]
            pos += take

    def read(self, pages: list[int], length: int) -> bytes:
        """A block's bytes as one new object (safe to hand to a transport after the pages move)."""
        parts = [self.view[offset : offset + take] for offset, take in page_slices(pages, length, self.page_bytes)]
        return parts[0].tobytes() if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Unmap and remove the shared file (clients keep their own mapping until they drop it)."""
        self.view.release()
        self._map.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None
