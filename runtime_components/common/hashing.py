"""Chained prefix-block hashes: the key shared by prefix caching, prefix-aware routing and
the KV-cache pool.

A prompt's token ids are cut into full blocks of ``block_size`` tokens; block i's hash
covers block i's tokens *and* block i-1's hash, so equal hashes mean equal prefixes up to
and including that block. A ``salt`` (the model, or model plus adapter) keeps prefixes of
different models or adapters apart, as vLLM's extra hash keys do. Hashes are 64-bit
unsigned integers from BLAKE2b: stable across processes and machines (unlike ``hash()``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

__all__ = ["DEFAULT_BLOCK_SIZE", "block_hashes", "hash_block", "root_hash"]

DEFAULT_BLOCK_SIZE = 16


def hash_block(parent: int, tokens: Sequence[int]) -> int:
    """Hash one block given its parent's hash (0 for the first block)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(parent.to_bytes(8, "little"))
    h.update(struct.pack(f"<{len(tokens)}I", *tokens))
    return int.from_bytes(h.digest(), "little")


def root_hash(salt: str) -> int:
    """The parent of a chain's first block: 0 without a salt, else the salt's own hash."""
    return int.from_bytes(hashlib.blake2b(salt.encode("utf-8"), digest_size=8).digest(), "little") if salt else 0


def block_hashes(token_ids: Sequence[int], block_size: int = DEFAULT_BLOCK_SIZE, salt: str = "") -> list[int]:
    """Return the chained hashes of every *full* block of ``token_ids``.

    >>> a = block_hashes(list(range(40)), 16)
    >>> len(a), a == block_hashes(list(range(32)) + [7] * 8, 16)[:2] + a[2:]
    (2, True)
    """
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    parent = root_hash(salt)
    out: list[int] = []
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash_block(parent, token_ids[start : start + block_size])
        out.append(parent)
    return out
