"""HPACK (RFC 7541) header-block decoding for the gateway's HTTP/2 server.

The ``hpack`` package's decoder costs about 30 us for a block of nine indexed headers, which
is a tenth of what one ext_proc stream may cost in all; this one does the same work in a few
microseconds because a block Envoy sends after its first stream is almost all one-byte
indexed fields. Huffman-coded strings (new values only) are decoded by ``hpack``'s table.
The dynamic table is kept exactly (sizes, eviction, size updates), as the peer's encoder
relies on it even for the headers this server does not read.
"""

from __future__ import annotations

from collections import deque

from hpack.huffman_table import HPACKDecodingError, decode_huffman
from hpack.table import HeaderTable

__all__ = ["HpackDecoder", "HpackError"]

_STATIC = HeaderTable.STATIC_TABLE  # 61 (name, value) pairs, index 1..61
_STATIC_COUNT = len(_STATIC)
_ENTRY_OVERHEAD = 32  # RFC 7541 section 4.1
#: Huffman strings already decoded. Envoy sends ``:path`` as a literal it never indexes, the
#: same bytes on every stream; decoding it each time was a quarter of the decoder's cost.
_HUFFMAN_SEEN: dict[bytes, bytes] = {}
_HUFFMAN_SEEN_MAX = 1024


class HpackError(ValueError):
    """A header block that cannot be decoded: a connection error (COMPRESSION_ERROR)."""


class HpackDecoder:
    """One connection's decoder: ``decode(block)`` -> [(name, value)] as bytes."""

    __slots__ = ("_table", "_size", "_max_size", "_limit")

    def __init__(self, max_table_size: int = 4096) -> None:
        self._table: deque[tuple[bytes, bytes]] = deque()  # newest first: index 62 is _table[0]
        self._size = 0
        self._max_size = max_table_size  # the current size, as the encoder last set it
        self._limit = max_table_size  # what our SETTINGS_HEADER_TABLE_SIZE allows

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_COUNT:
            return _STATIC[index - 1]
        try:
            return self._table[index - _STATIC_COUNT - 1]
        except IndexError:
            raise HpackError(f"header index {index} is outside the table") from None

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if size > self._max_size:  # an entry larger than the table empties it (RFC 7541 4.4)
            self._table.clear()
            self._size = 0
            return
        self._table.appendleft((name, value))
        self._size += size
        self._shrink()

    def _shrink(self) -> None:
        while self._size > self._max_size:
            name, value = self._table.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        i, end = 0, len(block)
        try:
            while i < end:
                byte = block[i]
                if byte & 0x80:  # indexed field
                    index, i = _integer(block, i, 7)
                    headers.append(self._entry(index))
                    continue
                if byte & 0x40:  # literal with incremental indexing
                    prefix, index_it = 6, True
                elif byte & 0x20:  # dynamic table size update
                    size, i = _integer(block, i, 5)
                    if size > self._limit:
                        raise HpackError(f"table size update to {size} exceeds the {self._limit} allowed")
                    self._max_size = size
                    self._shrink()
                    continue
                else:  # literal without indexing (0000) or never indexed (0001)
                    prefix, index_it = 4, False
                index, i = _integer(block, i, prefix)
                if index:
                    name = self._entry(index)[0]
                else:
                    name, i = _string(block, i)
                value, i = _string(block, i)
                headers.append((name, value))
                if index_it:
                    self._add(name, value)
        except IndexError:
            raise HpackError("truncated header block") from None
        return headers


def _integer(data: bytes, i: int, prefix: int) -> tuple[int, int]:
    """An HPACK integer with an N-bit prefix starting at data[i]; (value, next index)."""
    mask = (1 << prefix) - 1
    value = data[i] & mask
    i += 1
    if value < mask:
        return value, i
    shift = 0
    while True:
        byte = data[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i
        if shift > 28:
            raise HpackError("header integer too large")


def _string(data: bytes, i: int) -> tuple[bytes, int]:
    huffman = data[i] & 0x80
    length, i = _integer(data, i, 7)
    end = i + length
    if end > len(data):
        raise HpackError("truncated header string")
    raw = bytes(data[i:end])
    if huffman:
        decoded = _HUFFMAN_SEEN.get(raw)
        if decoded is None:
            try:
                decoded = decode_huffman(raw)
            except HPACKDecodingError as exc:
                raise HpackError(f"bad Huffman string: {exc}") from None
            if len(_HUFFMAN_SEEN) >= _HUFFMAN_SEEN_MAX:
                _HUFFMAN_SEEN.clear()
            _HUFFMAN_SEEN[raw] = decoded
        return decoded, end
    return raw, end
