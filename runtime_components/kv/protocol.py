"""The pool's binary block protocol, version 1: frame header and payload codecs (pure).

Every message is one frame: a 16-byte little-endian header then ``length`` payload bytes.

    magic "KV" (2) | version u8 | op u8 | request id u32 | payload length u64

A response carries the request's id and ``op | 0x80``; an error carries op 0xFF and the
payload ``code u16 | message``. Requests on one connection may be pipelined; the server
answers in order. Strings are ``u16 length | UTF-8``; keys are u64 prefix-block hashes.

| op | request payload | response payload |
|---|---|---|
| HELLO 1 | node id str, wants-shm u8 | page u32, heap bytes u64, node id str, shm path str |
| EXISTS 2 | n u32, n x key | n u32, n x u8 (1 = held) |
| GET 3 | n u32, n x key | n u32, n x (status u8, crc u32, len u64), then the hit blocks' bytes |
| PUT 4 | n u32, n x (key, flags u8, crc u32, len u64), then the bytes | n u32, n x status u8 |
| SHM_GET 5 | n u32, n x key | lease u32, n u32, n x (status u8, has-crc u8, crc u32, len u64, pages u32, page ids u32...) |
| SHM_RELEASE 6 | lease u32 | (empty) |
| SHM_ALLOC 7 | n u32, n x (key, len u64, flags u8) | lease u32, n u32, n x (status u8, pages u32, page ids u32...) |
| SHM_COMMIT 8 | lease u32, n u32, n x (has-crc u8, crc u32) | n u32, n x status u8 |

Put status codes are `store.PutStatus`; a GET status is 1 for a hit, 0 for a miss. Put flags:
bit 0 = the crc field is set, bit 1 = warm (the block extends a prefix just read: an eviction
admission hint).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "HEADER",
    "MAGIC",
    "VERSION",
    "BlockMeta",
    "ErrorCode",
    "Op",
    "ProtocolError",
    "ShmEntry",
    "decode_error",
    "decode_get_response",
    "decode_hello_request",
    "decode_hello_response",
    "decode_keys",
    "decode_lease",
    "decode_shm_alloc_response",
    "decode_put_request",
    "decode_shm_alloc_request",
    "decode_shm_commit_request",
    "decode_shm_get_response",
    "decode_statuses",
    "encode_error",
    "encode_frame",
    "encode_get_response",
    "encode_hello_request",
    "encode_hello_response",
    "encode_keys",
    "encode_put_request",
    "encode_shm_alloc_request",
    "encode_shm_commit_request",
    "encode_shm_entries",
    "encode_statuses",
]

MAGIC = b"KV"
VERSION = 1
HEADER = struct.Struct("<2sBBIQ")
RESPONSE_BIT = 0x80
_U32 = struct.Struct("<I")
_GET_META = struct.Struct("<BIQ")
_PUT_META = struct.Struct("<QBIQ")
_SHM_META = struct.Struct("<BBIQI")
_ALLOC_REQ = struct.Struct("<QQB")
FLAG_CRC = 1
FLAG_WARM = 2
_ALLOC_META = struct.Struct("<BI")
_COMMIT = struct.Struct("<BI")


class Op:
    HELLO = 1
    EXISTS = 2
    GET = 3
    PUT = 4
    SHM_GET = 5
    SHM_RELEASE = 6
    SHM_ALLOC = 7
    SHM_COMMIT = 8
    ERROR = 0xFF
    NAMES = {1: "hello", 2: "exists", 3: "get", 4: "put", 5: "shm_get", 6: "shm_release", 7: "shm_alloc", 8: "shm_commit"}


class ErrorCode:
    BAD_MAGIC = 1
    UNSUPPORTED_VERSION = 2
    UNKNOWN_OP = 3
    MALFORMED = 4
    TOO_LARGE = 5
    SHM_UNAVAILABLE = 6
    UNKNOWN_LEASE = 7
    SHUTTING_DOWN = 8
    TIMEOUT = 9  # a frame did not fully arrive in time; the server closes the connection
    #: errors after which the byte stream cannot be trusted: the server closes the connection
    FATAL = frozenset({BAD_MAGIC, UNSUPPORTED_VERSION, TOO_LARGE, TIMEOUT})


class ProtocolError(Exception):
    """A frame that breaks the protocol; ``code`` is an `ErrorCode`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class BlockMeta:
    """One block's entry in a GET response or PUT request; bytes at [offset, offset+length)."""

    key: int
    status: int
    crc: int | None
    offset: int
    length: int
    warm: bool = False


@dataclass(frozen=True)
class ShmEntry:
    """One block's place in the shared heap (SHM_GET / SHM_ALLOC responses)."""

    status: int
    length: int
    crc: int | None
    pages: tuple[int, ...]


def encode_frame(op: int, request_id: int, payload_len: int) -> bytes:
    """The 16-byte header; the payload follows as separate buffers (no join of large data)."""
    return HEADER.pack(MAGIC, VERSION, op, request_id & 0xFFFFFFFF, payload_len)


class _Reader:
    """Bounds-checked sequential reads, so a short payload is a MALFORMED error, not a crash."""

    def __init__(self, buf: bytes | bytearray | memoryview, what: str) -> None:
        self.buf = buf
        self.pos = 0
        self.what = what

    def take(self, st: struct.Struct) -> tuple:
        if self.pos + st.size > len(self.buf):
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"{self.what}: payload ends at byte {len(self.buf)}, expected at least {self.pos + st.size}",
            )
        out = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return out

    def many(self, fmt: str, count: int) -> tuple:
        return self.take(struct.Struct(f"<{count}{fmt}")) if count else ()

    def string(self) -> str:
        (n,) = self.take(struct.Struct("<H"))
        (raw,) = self.take(struct.Struct(f"<{n}s"))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.MALFORMED, f"{self.what}: a string is not UTF-8") from None

    def count(self, limit: int) -> int:
        (n,) = self.take(_U32)
        if n > limit:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"{self.what}: {n} entries, at most {limit} per request")
        return n

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ProtocolError(
                ErrorCode.MALFORMED, f"{self.what}: {len(self.buf) - self.pos} unexpected bytes after the payload"
            )


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<H", len(raw)) + raw


# -- HELLO -----------------------------------------------------------------------------------


def encode_hello_request(node_id: str, wants_shm: bool) -> bytes:
    return _string(node_id) + bytes([1 if wants_shm else 0])


def decode_hello_request(buf: bytes | bytearray | memoryview) -> tuple[str, bool]:
    r = _Reader(buf, "hello")
    node = r.string()
    (wants,) = r.take(struct.Struct("<B"))
    r.end()
    return node, bool(wants)


def encode_hello_response(page_bytes: int, heap_bytes: int, node_id: str, shm_path: str) -> bytes:
    return struct.pack("<IQ", page_bytes, heap_bytes) + _string(node_id) + _string(shm_path)


def decode_hello_response(buf: bytes | bytearray | memoryview) -> tuple[int, int, str, str]:
    r = _Reader(buf, "hello response")
    page, heap = r.take(struct.Struct("<IQ"))
    node, path = r.string(), r.string()
    r.end()
    return page, heap, node, path


# -- keys and statuses -----------------------------------------------------------------------


def encode_keys(keys: list[int]) -> bytes:
    return struct.pack(f"<I{len(keys)}Q", len(keys), *keys)


def decode_keys(buf: bytes | bytearray | memoryview, limit: int, what: str = "keys") -> list[int]:
    r = _Reader(buf, what)
    n = r.count(limit)
    keys = list(r.many("Q", n))
    r.end()
    return keys


def encode_statuses(statuses: list[int]) -> bytes:
    return _U32.pack(len(statuses)) + bytes(statuses)


def decode_statuses(buf: bytes | bytearray | memoryview, what: str = "statuses") -> list[int]:
    r = _Reader(buf, what)
    n = r.count(1 << 30)
    out = list(r.many("B", n))
    r.end()
    return out


# -- GET / PUT -------------------------------------------------------------------------------


def encode_get_response(entries: list[tuple[int, int, int]]) -> bytes:
    """The table of (status, crc, length); the hit blocks' bytes follow in key order."""
    table = bytearray(_U32.pack(len(entries)))
    for status, crc, length in entries:
        table += _GET_META.pack(status, crc, length)
    return bytes(table)


def decode_get_response(buf: bytes | bytearray | memoryview, keys: list[int]) -> list[BlockMeta]:
    r = _Reader(buf, "get response")
    n = r.count(1 << 30)
    if n != len(keys):
        raise ProtocolError(ErrorCode.MALFORMED, f"get response: {n} entries for {len(keys)} keys")
    metas = [r.take(_GET_META) for _ in range(n)]
    offset = r.pos
    out = []
    for key, (status, crc, length) in zip(keys, metas):
        out.append(BlockMeta(key, status, crc, offset, length if status else 0))
        if status:
            offset += length
    if offset != len(buf):
        raise ProtocolError(ErrorCode.MALFORMED, f"get response: blocks need {offset} bytes, payload has {len(buf)}")
    return out


def encode_put_request(blocks: list[tuple[int, int | None, int]], warm: bool = False) -> bytes:
    """The table of (key, crc or None, length); the blocks' bytes follow in the same order."""
    table = bytearray(_U32.pack(len(blocks)))
    for key, crc, length in blocks:
        flags = (0 if crc is None else FLAG_CRC) | (FLAG_WARM if warm else 0)
        table += _PUT_META.pack(key, flags, crc or 0, length)
    return bytes(table)


def decode_put_request(buf: bytes | bytearray | memoryview, limit: int) -> list[BlockMeta]:
    r = _Reader(buf, "put")
    n = r.count(limit)
    metas = [r.take(_PUT_META) for _ in range(n)]
    offset = r.pos
    out = []
    for key, flags, crc, length in metas:
        out.append(BlockMeta(key, 0, crc if flags & FLAG_CRC else None, offset, length, bool(flags & FLAG_WARM)))
        offset += length
    if offset != len(buf):
        raise ProtocolError(ErrorCode.MALFORMED, f"put: blocks need {offset} bytes, payload has {len(buf)}")
    return out


# -- shared memory ---------------------------------------------------------------------------


def encode_shm_entries(lease: int, entries: list[ShmEntry], with_crc: bool) -> bytes:
    """SHM_GET (with_crc) or SHM_ALLOC response."""
    out = bytearray(struct.pack("<II", lease, len(entries)))
    for e in entries:
        if with_crc:
            out += _SHM_META.pack(e.status, 0 if e.crc is None else 1, e.crc or 0, e.length, len(e.pages))
        else:
            out += _ALLOC_META.pack(e.status, len(e.pages))
        out += struct.pack(f"<{len(e.pages)}I", *e.pages)
    return bytes(out)


def decode_shm_get_response(buf: bytes | bytearray | memoryview) -> tuple[int, list[ShmEntry]]:
    return _decode_shm_entries(buf, True, "shm_get response")


def decode_shm_alloc_response(buf: bytes | bytearray | memoryview) -> tuple[int, list[ShmEntry]]:
    return _decode_shm_entries(buf, False, "shm_alloc response")


def _decode_shm_entries(buf: bytes | bytearray | memoryview, with_crc: bool, what: str) -> tuple[int, list[ShmEntry]]:
    r = _Reader(buf, what)
    (lease,) = r.take(_U32)
    n = r.count(1 << 30)
    out = []
    for _ in range(n):
        if with_crc:
            status, has_crc, crc, length, n_pages = r.take(_SHM_META)
        else:
            (status, n_pages), has_crc, crc, length = r.take(_ALLOC_META), 0, 0, 0
        pages = r.many("I", n_pages)
        out.append(ShmEntry(status, length, crc if has_crc else None, tuple(pages)))
    r.end()
    return lease, out


def encode_shm_alloc_request(blocks: list[tuple[int, int]], warm: bool = False) -> bytes:
    out = bytearray(_U32.pack(len(blocks)))
    for key, length in blocks:
        out += _ALLOC_REQ.pack(key, length, FLAG_WARM if warm else 0)
    return bytes(out)


def decode_shm_alloc_request(buf: bytes | bytearray | memoryview, limit: int) -> list[tuple[int, int, bool]]:
    """(key, length, warm) per block."""
    r = _Reader(buf, "shm_alloc")
    n = r.count(limit)
    out = [r.take(_ALLOC_REQ) for _ in range(n)]
    r.end()
    return [(key, length, bool(flags & FLAG_WARM)) for key, length, flags in out]


def encode_shm_commit_request(lease: int, crcs: list[int | None]) -> bytes:
    out = bytearray(struct.pack("<II", lease, len(crcs)))
    for crc in crcs:
        out += _COMMIT.pack(0 if crc is None else 1, crc or 0)
    return bytes(out)


def decode_shm_commit_request(buf: bytes | bytearray | memoryview, limit: int) -> tuple[int, list[int | None]]:
    r = _Reader(buf, "shm_commit")
    (lease,) = r.take(_U32)
    n = r.count(limit)
    crcs: list[int | None] = []
    for _ in range(n):
        has_crc, crc = r.take(_COMMIT)
        crcs.append(crc if has_crc else None)
    r.end()
    return lease, crcs


def decode_lease(buf: bytes | bytearray | memoryview) -> int:
    r = _Reader(buf, "shm_release")
    (lease,) = r.take(_U32)
    r.end()
    return lease


# -- errors ----------------------------------------------------------------------------------


def encode_error(code: int, message: str) -> bytes:
    raw = message[:1000].encode("utf-8")
    return struct.pack("<HH", code, len(raw)) + raw


def decode_error(buf: bytes | bytearray | memoryview) -> ProtocolError:
    r = _Reader(buf, "error")
    (code,) = r.take(struct.Struct("<H"))
    message = r.string()
    return ProtocolError(code, message)
