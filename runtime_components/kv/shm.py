"""Client side of the same-node fast path: map a member's page heap and copy blocks in/out.

A member offers its heap file in the HELLO answer only when the client reports the same
node identity (the kernel's boot id, shared by every pod on a node; the hostname where that
file is missing). The client maps the file read-write; a block is then copied between the
caller's buffer and the pages the server names, one memcpy per page run, no socket.
Safety comes from the protocol, not from locks: the server pins pages it names for a read
until SHM_RELEASE, and never publishes pages it handed out for a write until SHM_COMMIT.
"""

from __future__ import annotations

import mmap
import os
import socket
from pathlib import Path

from runtime_components.kv.heap import page_slices

__all__ = ["MappedHeap", "node_identity"]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def node_identity() -> str:
    """A string equal for processes on the same kernel (so same node), different otherwise."""
    try:
        return "boot:" + _BOOT_ID.read_text().strip()
    except OSError:
        return "host:" + socket.gethostname()


class MappedHeap:
    """A member's heap file mapped into this process."""

    def __init__(self, path: str, size: int, page_bytes: int) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size < size:
                raise OSError(f"shared heap {path} is smaller than announced ({size} bytes)")
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.view = memoryview(self._map)
        self.page_bytes = page_bytes
        self.size = size
        self.n_pages = size // page_bytes

    def _check(self, pages: tuple[int, ...], length: int) -> None:
        if len(pages) * self.page_bytes < length or any(not 0 <= page < self.n_pages for page in pages):
            raise ValueError(f"member named pages {list(pages)[:4]}... for {length} bytes; the heap has {self.n_pages}")

    def read_into(self, pages: tuple[int, ...], length: int, dest: memoryview) -> None:
        """Copy a block out of its pages into ``dest`` (at least ``length`` bytes)."""
        self._check(pages, length)
        pos = 0
        for offset, take in page_slices(list(pages), length, self.page_bytes):
            dest[pos : pos + take] = self.view[offset : offset + take]
            pos += take

    def write_from(self, pages: tuple[int, ...], src: memoryview) -> None:
        """Copy a block from ``src`` into the pages the server reserved for it."""
        self._check(pages, len(src))
        pos = 0
        for offset, take in page_slices(list(pages), len(src), self.page_bytes):
            self.view[offset : offset + take] = src[pos : pos + take]
            pos += take

    def close(self) -> None:
        self.view.release()
        try:
            self._map.close()
        except BufferError:  # a caller still holds a view; the mapping goes with the last one
            pass
