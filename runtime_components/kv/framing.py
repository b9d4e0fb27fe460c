"""Zero-copy frame reassembly for asyncio's BufferedProtocol (server and client share it).

The socket is read straight into the destination: first the 16-byte header, then a payload
buffer of exactly the announced length, so a 4 MiB block is copied once by the kernel and
never re-sliced (StreamReader would copy each chunk into its buffer and again out of it).
A header with the wrong magic or version, or a length above ``max_payload``, raises
ProtocolError: the stream can no longer be trusted and the caller closes the connection.

With ``reuse_buffer`` (the server, whose handlers finish with a payload before the next frame
is read) payloads land in one scratch buffer kept per connection, so a busy connection does
not allocate, zero and fault in fresh memory for every request. Handlers then receive a
memoryview valid only during the call.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime_components.kv.protocol import HEADER, MAGIC, VERSION, ErrorCode, ProtocolError

__all__ = ["FrameAssembler", "FrameHandler"]

#: called with (op, request id, payload) for each complete frame
FrameHandler = Callable[[int, int, "bytearray | memoryview"], None]


class FrameAssembler:
    """Implements get_buffer/buffer_updated; hands each complete frame to ``on_frame``."""

    def __init__(self, on_frame: FrameHandler, max_payload: int, *, reuse_buffer: bool = False) -> None:
        self._on_frame = on_frame
        self._max_payload = max_payload
        self._header = bytearray(HEADER.size)
        self._scratch: bytearray | None = bytearray() if reuse_buffer else None
        self._reset()

    def _reset(self) -> None:
        self._target = memoryview(self._header)
        self._pos = 0
        self._in_header = True
        self._op = 0
        self._request_id = 0
        self._payload: bytearray | memoryview = bytearray()

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame has arrived (a request is in flight)."""
        return self._pos > 0 or not self._in_header

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._target[self._pos :]

    def buffer_updated(self, nbytes: int) -> None:
        self._pos += nbytes
        if self._pos < len(self._target):
            return
        if self._in_header:
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
            if self._scratch is None:
                self._payload = bytearray(length)
            else:
                if len(self._scratch) < length:
                    self._scratch = bytearray(length)
                self._payload = memoryview(self._scratch)[:length]
            self._target = memoryview(self._payload)
            self._pos = 0
            self._in_header = False
            return
        self._deliver(self._payload)

    def _deliver(self, payload: bytearray | memoryview) -> None:
        op, request_id = self._op, self._request_id
        self._reset()
        self._on_frame(op, request_id, payload)
