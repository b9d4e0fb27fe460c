"""Frame reassembly for asyncio's BufferedProtocol (server and client share it).

The socket is read straight into the destination: first the 16-byte header, then the
payload buffer, so a block is copied once by the kernel and never re-sliced (StreamReader
would copy each chunk into its buffer and again out of it). A header with the wrong magic or
version, or a length above ``max_payload``, raises ProtocolError: the stream can no longer
be trusted and the caller closes the connection.

Two ways to hold a payload:

- exact (the client, which trusts the members it chose): one buffer of the announced length
  is allocated when the header arrives, and handed over whole.
- ``incremental`` (the server, facing any client): memory follows the bytes that arrived,
  never the length a header claims. The buffer starts at 64 KiB and doubles while the frame
  keeps coming, so a header announcing 1 GiB that is followed by nothing costs nothing.
  Buffers of 1 MiB and more are anonymous memory maps: growing one is an mremap (no copy),
  and dropping it hands the pages straight back to the kernel (a large bytearray freed into
  malloc's heap may stay in the process).

With ``reuse_buffer`` (the server, whose handlers finish with a payload before the next frame
is read) payloads land in one scratch buffer kept per connection, so a busy connection does
not allocate, zero and fault in fresh memory for every request. Handlers then receive a
memoryview valid only during the call. ``release()`` drops the scratch buffer (the server
does it when a connection closes or stays idle).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable

from runtime_components.kv.protocol import HEADER, MAGIC, VERSION, ErrorCode, ProtocolError

__all__ = ["FrameAssembler", "FrameHandler", "HeaderHandler"]

#: called with (op, request id, payload) for each complete frame
FrameHandler = Callable[[int, int, "bytearray | memoryview"], None]
#: called with the payload length as soon as a header is accepted, before any payload memory
HeaderHandler = Callable[[int], None]

_FIRST_CHUNK = 64 << 10
_MAP_FROM = 1 << 20  # buffers at least this big are anonymous maps


def _allocate(size: int) -> bytearray | mmap.mmap:
    # private: a shared anonymous map cannot grow in place (its backing object has a fixed size)
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) if size >= _MAP_FROM else bytearray(size)


class FrameAssembler:
    """Implements get_buffer/buffer_updated; hands each complete frame to ``on_frame``."""

    def __init__(self, on_frame: FrameHandler, max_payload: int, *, reuse_buffer: bool = False,
                 incremental: bool = False, on_header: HeaderHandler | None = None) -> None:
        self._on_frame = on_frame
        self._on_header = on_header
        self._max_payload = max_payload
        self._reuse = reuse_buffer
        self._incremental = incremental
        self._header = bytearray(HEADER.size)
        self._buffer: bytearray | mmap.mmap | None = None  # the payload buffer (scratch when reused)
        self._view: memoryview | None = None
        self.frames_done = 0
        self._reset()

    def _reset(self) -> None:
        self._pos = 0
        self._in_header = True
        self._op = 0
        self._request_id = 0
        self._length = 0
        if not self._reuse:
            self._drop()

    def _drop(self) -> None:
        self._view = None  # views are dropped, not released: a handler's slice may outlive them
        self._buffer = None

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame has arrived (a request is in flight)."""
        return self._pos > 0 or not self._in_header

    @property
    def held_bytes(self) -> int:
        """Bytes of payload buffer this connection holds now."""
        return 0 if self._buffer is None else len(self._buffer)

    def release(self) -> None:
        """Drop the payload buffer (between frames; mid-frame it would lose the bytes received)."""
        if not self.mid_frame:
            self._drop()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._in_header:
            return memoryview(self._header)[self._pos :]
        assert self._view is not None
        if self._pos == len(self._view):  # incremental: everything so far has arrived, grow
            self._grow(min(self._length, max(2 * self._pos, _FIRST_CHUNK)))
        return self._view[self._pos :]

    def _grow(self, size: int) -> None:
        """Make the buffer at least ``size`` bytes, keeping what arrived; ``_view`` = [:needed]."""
        need = max(size, self._pos)
        buffer = self._buffer
        if buffer is None or len(buffer) < need:
            self._view = None
            grown: bytearray | mmap.mmap | None = None
            if isinstance(buffer, mmap.mmap):
                try:
                    buffer.resize(need)  # mremap: the kernel moves page tables, not bytes
                    grown = buffer
                except (BufferError, OSError, SystemError):  # a handler still holds a view
                    grown = None
            if grown is None:
                grown = _allocate(need)
                if buffer is not None and self._pos:
                    memoryview(grown)[: self._pos] = memoryview(buffer)[: self._pos]
            self._buffer = buffer = grown
        self._view = memoryview(buffer)[: min(len(buffer), self._length)]

    def buffer_updated(self, nbytes: int) -> None:
        self._pos += nbytes
        if self._in_header:
            if self._pos < HEADER.size:
                return
            self._accept_header()
            return
        assert self._view is not None
        if self._pos < self._length:
            return
        payload: bytearray | memoryview
        if not self._reuse and isinstance(self._buffer, bytearray) and len(self._buffer) == self._length:
            payload, self._buffer, self._view = self._buffer, None, None  # exact buffer: hand it over
        else:
            payload = self._view[: self._length]
        self._deliver(payload)

    def _accept_header(self) -> None:
        magic, version, op, request_id, length = HEADER.unpack(self._header)
        if magic != MAGIC:
            raise ProtocolError(ErrorCode.BAD_MAGIC, f"bad frame magic {bytes(magic)!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {version} not supported; this side speaks version {VERSION}",
            )
        if length > self._max_payload:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"frame of {length} bytes exceeds the limit of {self._max_payload} bytes"
            )
        self._op, self._request_id = op, request_id
        if length == 0:
            self._deliver(bytearray())
            return
        self._length = length
        self._pos = 0
        self._in_header = False
        if self._on_header is not None:
            self._on_header(length)
        if self._incremental:
            # No payload memory yet: get_buffer grows it as bytes come (a scratch buffer
            # already big enough is simply reused).
            if self._buffer is not None and len(self._buffer) >= min(length, _FIRST_CHUNK):
                self._view = memoryview(self._buffer)[: min(len(self._buffer), length)]
            else:
                self._grow(min(length, _FIRST_CHUNK))
        elif self._reuse:
            self._grow(length)
        else:
            self._buffer = bytearray(length)
            self._view = memoryview(self._buffer)

    def _deliver(self, payload: bytearray | memoryview) -> None:
        op, request_id = self._op, self._request_id
        self.frames_done += 1
        self._reset()
        self._on_frame(op, request_id, payload)
