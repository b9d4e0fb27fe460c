"""A small gRPC server over cleartext HTTP/2 (h2c), for the gateway's ext_proc and health services.

Why not grpcio: behind real Envoy, a grpc.aio servicer that does nothing costs about 0.45 ms
of CPU per ext_proc stream (``benchmarks.extproc_floor``), more than the gateway's own work
for a request several times over; grpclib (pure Python, on the ``h2`` state machine) costs
the same. The protocol Envoy's gRPC client speaks to an ext_proc server is narrow: one
HTTP/2 connection per Envoy thread, one stream per HTTP request, length-prefixed protobuf
messages in DATA frames, a trailer with ``grpc-status``. This module implements that part of
HTTP/2 (RFC 9113) and gRPC directly on an asyncio Protocol:

- frames: DATA, HEADERS (+ CONTINUATION, padding, priority), RST_STREAM, SETTINGS, PING,
  GOAWAY, WINDOW_UPDATE; PRIORITY and unknown types are ignored, PUSH_PROMISE is an error;
- HPACK decoding with the peer's dynamic table (``hpack_decode``); the server's own header
  blocks are constant literals that never touch a dynamic table;
- flow control both ways: generous receive windows, refilled as data arrives; sends wait for
  the peer's windows and respect its MAX_FRAME_SIZE;
- per stream a task running the method's handler, or for a ``SessionMethod`` (ext_proc) no
  task until a step has to wait; a RST_STREAM from the peer, or the connection closing,
  cancels it (so a client that disconnects while its request is held leaves the queue at
  once, as with grpcio);
- gRPC: identity encoding only (a compressed message ends the stream with UNIMPLEMENTED), a
  receive limit per message (RESOURCE_EXHAUSTED), INTERNAL for a handler that raises,
  UNIMPLEMENTED for an unknown method.

A streaming handler receives a context with ``await read()`` (a message, or ``grpc.aio.EOF``
once the client half-closes) and ``await write(message)``, the same reader/writer interface
as grpc.aio's. A ``SessionMethod`` is driven by the server instead (ext_proc's
``ExtProcSession``, which grpcio runs through ``ExtProcServicer.Process``). A unary handler
maps request bytes to response bytes. TLS is not offered: the gateway's gRPC port is
reached by Envoy inside the cluster (as with the grpcio server it replaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import types
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import grpc

from .hpack_decode import HpackDecoder, HpackError

__all__ = ["H2GrpcServer", "SessionMethod", "StreamMethod", "UnaryMethod", "EOF"]

log = logging.getLogger(__name__)

EOF = grpc.aio.EOF  # what read() returns once the client has half-closed (grpc.aio's sentinel)

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = range(10)
_END_STREAM = _ACK = 0x1
_END_HEADERS, _PADDED, _PRIORITY_FLAG = 0x4, 0x8, 0x20
_NO_ERROR, _PROTOCOL_ERROR, _FLOW_CONTROL_ERROR, _FRAME_SIZE_ERROR, _COMPRESSION_ERROR = 0x0, 0x1, 0x3, 0x6, 0x9
_SETTINGS_HEADER_TABLE_SIZE, _SETTINGS_INITIAL_WINDOW, _SETTINGS_MAX_FRAME = 0x1, 0x4, 0x5
_DEFAULT_WINDOW = 65_535
_MAX_WINDOW = (1 << 31) - 1
#: Our receive windows (stream and connection), refilled once half of one has been used.
_RECEIVE_WINDOW = 1 << 30
_REFILL_AT = _RECEIVE_WINDOW // 2
#: The largest frame we accept (SETTINGS_MAX_FRAME_SIZE): a buffered body in few frames.
_OUR_MAX_FRAME = 1 << 20
_MAX_HEADER_BLOCK = 1 << 20

#: A frame's 9-byte header in one call: (length << 8 | type, flags, R bit | stream id).
_FRAME_HEAD = struct.Struct(">IBI")

# gRPC status codes used here.
_OK, _RESOURCE_EXHAUSTED, _UNIMPLEMENTED, _INTERNAL = 0, 8, 12, 13


def _frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + stream_id.to_bytes(4, "big") + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """A header field 'literal without indexing, new name', no Huffman (RFC 7541 6.2.2)."""
    return b"\x00" + _hpack_length(name) + name + _hpack_length(value) + value


def _hpack_length(data: bytes) -> bytes:
    n = len(data)
    if n < 127:
        return bytes((n,))
    out, n = [127], n - 127
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# ":status: 200" is static index 8; "content-type" is static name 31, written as a literal
# without indexing (0x0F 0x10 = index 15 + 16).
_RESPONSE_HEADERS = b"\x88" + b"\x0f\x10" + _hpack_length(b"application/grpc") + b"application/grpc"


def _trailers(status: int, message: str = "") -> bytes:
    block = _literal(b"grpc-status", str(status).encode())
    if message:
        block += _literal(b"grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode())
    return block


_OK_TRAILERS = _trailers(_OK)
_RESET = object()  # a session's call was reset: its end runs, nothing is sent
_Coroutine = types.CoroutineType


@dataclass(frozen=True)
class StreamMethod:
    """A bidirectional-streaming method: ``handler(context)``; ``decode(bytes)`` -> message."""

    handler: Callable[[Any], Awaitable[None]]
    decode: Callable[[bytes], Any]


@dataclass(frozen=True)
class UnaryMethod:
    """A unary method on raw bytes: ``handler(request) -> response``."""

    handler: Callable[[bytes], Awaitable[bytes]]


@dataclass(frozen=True)
class SessionMethod:
    """A bidirectional-streaming method the server drives message by message instead of running
    a handler task per call: ``open()`` -> a session with ``on_message(message)``, returning the
    answer, None (no answer) or a coroutine of either, and ``on_end()``, returning None or a
    coroutine, called once when the call ends for any reason (the client's half-close, a reset,
    a lost connection, an error).

    An answer given at once is sent from the protocol callback; only a coroutine gets a task
    (coroutines may need one: timeouts, aiohttp and redis bind to the current task), and the
    messages behind it wait for it, in order. A reset cancels that task (or, before it has run,
    closes its coroutine) and runs ``on_end``. For ext_proc this leaves one task per request
    (the body phase) where a handler task needed a task, three wake-ups and two futures."""

    open: Callable[[], Any]
    decode: Callable[[bytes], Any]


class _Abort(Exception):
    """Ends a stream with a gRPC status (not a handler failure)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Stream:
    """One gRPC call; also the context its handler gets (``read``/``write``)."""

    __slots__ = ("id", "_conn", "_method", "_messages", "_waiter", "_remote_closed", "_buffer", "_received",
                 "send_window", "_headers_sent", "_pending", "_drained", "task", "closed", "_failed", "_session",
                 "_backlog", "_ended", "_task_started")

    def __init__(self, conn: _Connection, stream_id: int,
                 method: StreamMethod | UnaryMethod | SessionMethod | None) -> None:
        self.id = stream_id
        self._conn = conn
        self._method = method
        self._messages: deque[Any] = deque()
        self._waiter: asyncio.Future[Any] | None = None
        self._remote_closed = False
        self._buffer = bytearray()
        self._received = 0  # bytes since our last WINDOW_UPDATE for this stream
        self.send_window = conn.peer_initial_window
        self._headers_sent = False
        self._pending = bytearray()  # gRPC-framed bytes waiting for flow-control window
        self._drained: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self._failed = False  # a message could not be taken: the call ends with an error status
        self._session: Any = None
        self._backlog: deque[Any] = deque()
        self._ended = False  # a session's end ran
        self._task_started = False

    # -- inbound ---------------------------------------------------------------------------
    def data(self, payload: bytes, flow_length: int) -> None:
        self._received += flow_length
        if self._received >= _REFILL_AT and not self._remote_closed:
            self._conn.window_update(self.id, self._received)
            self._received = 0
        if self._failed:
            return  # the call is ending with an error status; the rest of its data is dropped
        buffer = self._buffer
        if not buffer and len(payload) >= 5 and payload[0] == 0 and len(payload) == 5 + int.from_bytes(payload[1:5], "big") \
                and len(payload) - 5 <= self._conn.server.max_receive:
            self._deliver(payload[5:])  # the usual case: one whole message in one frame
            return
        buffer += payload
        while len(buffer) >= 5:
            length = int.from_bytes(buffer[1:5], "big")
            if buffer[0] != 0:
                self._fail(_Abort(_UNIMPLEMENTED, "compressed messages are not supported"))
                return
            if length > self._conn.server.max_receive:
                self._fail(_Abort(_RESOURCE_EXHAUSTED, f"received message larger than max "
                                                       f"({length} vs. {self._conn.server.max_receive})"))
                return
            if len(buffer) < 5 + length:
                return
            message = bytes(buffer[5:5 + length])
            del buffer[:5 + length]
            self._deliver(message)

    def _deliver(self, raw: bytes) -> None:
        method = self._method
        if isinstance(method, (StreamMethod, SessionMethod)):
            try:
                item: Any = method.decode(raw)
            except Exception as exc:  # noqa: BLE001 - a message that does not parse ends this call only
                self._fail(_Abort(_INTERNAL, f"could not parse the request message: {exc}"))
                return
        else:
            item = raw
        if self._session is not None:
            self._feed(item)
        elif not self._hand_over(item):
            self._messages.append(item)

    def _hand_over(self, item: Any) -> bool:
        """Give ``item`` to a handler blocked in ``read()``; False when none is."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return False
        self._waiter = None
        if isinstance(item, BaseException):
            waiter.set_exception(item)
        else:
            waiter.set_result(item)
        return True

    def remote_end(self) -> None:
        self._remote_closed = True
        if self._failed:
            return
        if self._buffer:
            self._fail(_Abort(_INTERNAL, "the stream ended inside a message"))
            return
        if self._session is not None:
            self._feed(EOF)
        else:
            self._hand_over(EOF)  # a read() later sees _remote_closed

    def _fail(self, error: BaseException) -> None:
        if self._session is not None:
            self._feed(error)
        elif not self._hand_over(error):
            self._messages.append(error)  # read() raises it
        self._buffer.clear()
        self._failed = True

    def reset(self) -> None:
        """The peer reset the stream, or the connection went: the handler is cancelled (a
        session's running step is cancelled and ends the call; with none, the call ends now)."""
        self.closed = True
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("the stream was reset"))
        task = self.task
        if self._session is None:
            if task is not None and not task.done():
                task.cancel()
            return
        if self._ended:
            return  # ending already (an end task finishes on its own: its sends stop at ``closed``)
        if task is None or task.done():
            self._end(_RESET)
        elif self._task_started:
            task.cancel()  # the step sees CancelledError and ends the call
        # else: the task has not run; it sees ``closed`` first and ends the call (cancelling it
        # now would skip its body and leave a session coroutine never started)

    # -- a session's call (SessionMethod) ---------------------------------------------------
    # Every session task checks ``closed`` when it first runs (a reset may come before), and
    # the call ends (``_end``) exactly once, from the callback or from the task that was running.
    def _feed(self, item: Any) -> None:
        self._backlog.append(item)
        if self.task is None:
            self._pump()

    def _pump(self) -> None:
        """Handle what has arrived, in order, until a step returns a coroutine: that step gets a
        task, and what arrives meanwhile waits for it."""
        backlog = self._backlog
        while backlog and self.task is None and not self._ended:
            item = backlog.popleft()
            if item is EOF or isinstance(item, BaseException):
                self._end(item)
                continue
            try:
                answer = self._session.on_message(item)
                if type(answer) is _Coroutine:
                    self._start(self._step(answer))
                elif answer is not None:
                    self._answer(answer)
            except Exception:  # a failing step ends its call, never the connection's callback
                log.exception("gRPC handler failed on stream %d", self.id)
                self._end(_Abort(_INTERNAL, "internal error"))

    def _start(self, step: Any) -> None:
        self._task_started = False
        self.task = self._conn.loop.create_task(step)

    def _answer(self, answer: Any) -> None:
        """Send an answer now; only when the peer's windows (or the socket's buffer) are full does
        a task wait for them."""
        if not self._send_now(answer.SerializeToString()) or self._conn.paused is not None:
            self._start(self._drain())

    async def _drain(self) -> None:
        self._task_started = True
        outcome: Any = None
        try:
            await self._wait_drained()
            paused = self._conn.paused
            if paused is not None:
                await paused
        except (asyncio.CancelledError, ConnectionResetError):
            outcome = _RESET
        self.task = None
        self._after_step(outcome)

    async def _step(self, answer: Any) -> None:
        """A step whose answer is a coroutine, in its own task; then what arrived meanwhile."""
        self._task_started = True
        outcome: Any = None
        if self.closed:  # reset before this task ran: the step never starts
            answer.close()
            outcome = _RESET
        else:
            try:
                answer = await answer
                if answer is not None:
                    await self.send(answer.SerializeToString())
            except (asyncio.CancelledError, ConnectionResetError):
                outcome = _RESET
            except _Abort as abort:
                outcome = abort
            except Exception:
                log.exception("gRPC handler failed on stream %d", self.id)
                outcome = _Abort(_INTERNAL, "internal error")
        self.task = None
        self._after_step(outcome)

    def _after_step(self, outcome: Any) -> None:
        if outcome is None and self.closed and not self._ended:
            outcome = _RESET  # reset while the step was finishing
        if outcome is not None:
            self._end(outcome)
        else:
            self._pump()

    def _end(self, reason: Any) -> None:
        """End the call once: the session's ``on_end``, then the trailers (none after a reset)."""
        if self._ended:
            return
        self._ended = True
        self._backlog.clear()
        status: int | None
        if reason is _RESET:
            status, message = None, ""
        elif isinstance(reason, _Abort):
            status, message = reason.status, reason.message
        else:
            status, message = _OK, ""
        try:
            ending = self._session.on_end()
        except Exception:
            log.exception("gRPC handler failed ending stream %d", self.id)
            ending = None
            if status is not None:
                status, message = _INTERNAL, "internal error"
        if type(ending) is _Coroutine or (self._pending and status is not None):
            self._start(self._end_later(ending, status, message))
            return
        if status is not None and not self.closed:
            self._write_trailers(status, message)
        self._conn.forget(self)

    async def _end_later(self, ending: Any, status: int | None, message: str) -> None:
        self._task_started = True
        try:
            if ending is not None:
                await ending  # runs even after a reset: it settles the call
            if status is not None:
                await self.finish(status, message)
        except (asyncio.CancelledError, ConnectionResetError):
            pass
        except Exception:
            log.exception("gRPC handler failed ending stream %d", self.id)
        finally:
            self.task = None
            self._conn.forget(self)

    # -- the handler's context -------------------------------------------------------------
    async def read(self) -> Any:
        if self._messages:
            item = self._messages.popleft()
            if isinstance(item, BaseException):
                raise item
            return item
        if self._remote_closed or self.closed:
            return EOF
        waiter = self._waiter = self._conn.loop.create_future()
        return await waiter

    async def write(self, message: Any) -> None:
        await self.send(message.SerializeToString())

    async def send(self, payload: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("the stream was reset")
        if not self._send_now(payload):
            await self._wait_drained()
        paused = self._conn.paused
        if paused is not None:  # the socket's buffer is full (Envoy reads slower than we write)
            await paused

    def _send_now(self, payload: bytes) -> bool:
        """Frame ``payload`` (after the response headers, the first time) and send it if the
        peer's windows allow; otherwise keep it for ``flush``. True when it left now."""
        framed = b"\x00" + len(payload).to_bytes(4, "big") + payload
        if not self._headers_sent:
            self._headers_sent = True
            self._conn.write_headers(self.id, _RESPONSE_HEADERS, end_stream=False)
        if self._pending or not self._conn.send_data(self, framed):
            self._pending += framed
            return False
        return True

    async def _wait_drained(self) -> None:
        while self._pending:
            if self.closed:
                raise ConnectionResetError("the stream was reset")
            self._drained = self._conn.loop.create_future()
            self._conn.blocked.add(self)
            await self._drained

    def flush(self) -> None:
        """Send what the windows now allow (after a WINDOW_UPDATE or SETTINGS)."""
        if not self._pending:
            return
        sent = self._conn.send_some(self, self._pending)
        del self._pending[:sent]
        if not self._pending:
            self._conn.blocked.discard(self)
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    async def finish(self, status: int, message: str = "") -> None:
        """Trailers (after any data still waiting for window); END_STREAM."""
        if self.closed:
            return
        if self._pending:
            await self._wait_drained()
        self._write_trailers(status, message)

    def _write_trailers(self, status: int, message: str) -> None:
        block = _OK_TRAILERS if status == _OK and not message else _trailers(status, message)
        if not self._headers_sent:  # trailers-only answer
            block = _RESPONSE_HEADERS + block
        self._conn.write_headers(self.id, block, end_stream=True)
        self.closed = True
        if not self._remote_closed:  # the client may stop sending: a gRPC server's RST_STREAM(NO_ERROR)
            self._conn.write(_frame(_RST_STREAM, 0, self.id, _NO_ERROR.to_bytes(4, "big")))

    async def run(self) -> None:
        method = self._method
        try:
            if method is None:
                await self.finish(_UNIMPLEMENTED, "unknown method")
                return
            if isinstance(method, StreamMethod):
                await method.handler(self)
            else:
                request = await self.read()
                if request is EOF:
                    raise _Abort(_INTERNAL, "a unary call without a request message")
                await self.send(await method.handler(request))
            await self.finish(_OK)
        except _Abort as abort:
            await self.finish(abort.status, abort.message)
        except (asyncio.CancelledError, ConnectionResetError):
            return  # reset by the peer or the connection is gone: nobody to answer (finally forgets it)
        except Exception:
            log.exception("gRPC handler failed on stream %d", self.id)
            with contextlib.suppress(ConnectionResetError):  # the peer left while we failed
                await self.finish(_INTERNAL, "internal error")
        finally:
            self._conn.forget(self)


class _Connection(asyncio.Protocol):
    def __init__(self, server: H2GrpcServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface = False
        self._decoder = HpackDecoder()
        self.streams: dict[int, _Stream] = {}
        self._last_stream_id = 0
        self._headers_in_progress: tuple[int, int, bytearray] | None = None  # (stream id, flags, block)
        self.peer_initial_window = _DEFAULT_WINDOW
        self._peer_max_frame = 16_384
        self._send_window = _DEFAULT_WINDOW  # the connection's window for what we send
        self._received = 0  # DATA bytes since our last connection WINDOW_UPDATE
        self.blocked: set[_Stream] = set()
        self.paused: asyncio.Future[None] | None = None
        self._closing = False
        self._out: list[bytes] = []  # frames waiting for this iteration's flush

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's is not an asyncio.Transport subclass, so no isinstance.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self.server.connections.add(self)
        settings = (_SETTINGS_INITIAL_WINDOW.to_bytes(2, "big") + _RECEIVE_WINDOW.to_bytes(4, "big")
                    + _SETTINGS_MAX_FRAME.to_bytes(2, "big") + _OUR_MAX_FRAME.to_bytes(4, "big"))
        transport.write(_frame(_SETTINGS, 0, 0, settings)
                        + _frame(_WINDOW_UPDATE, 0, 0, (_RECEIVE_WINDOW - _DEFAULT_WINDOW).to_bytes(4, "big")))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.server.connections.discard(self)
        for stream in list(self.streams.values()):
            stream.reset()
        self.streams.clear()
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)

    def pause_writing(self) -> None:
        self.paused = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)
        self.paused = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        if not self._preface:
            if len(buffer) < len(_PREFACE):
                return
            if buffer[:len(_PREFACE)] != _PREFACE:
                self._abort(_PROTOCOL_ERROR, "not an HTTP/2 client preface (the gRPC port speaks h2c only)")
                return
            self._preface = True
            pos = len(_PREFACE)
        end = len(buffer)
        unpack = _FRAME_HEAD.unpack_from
        while end - pos >= 9 and self._transport is not None:
            head, flags, stream_id = unpack(buffer, pos)
            length = head >> 8
            if end - pos - 9 < length:
                break
            if length > _OUR_MAX_FRAME:
                self._abort(_FRAME_SIZE_ERROR, f"frame of {length} bytes")
                return
            ftype = head & 0xFF
            stream_id &= 0x7FFFFFFF
            payload = bytes(buffer[pos + 9:pos + 9 + length])
            pos += 9 + length
            try:
                self._frame_received(ftype, flags, stream_id, payload)
            except HpackError as exc:
                self._abort(_COMPRESSION_ERROR, str(exc))
                return
            except (_ConnectionError, IndexError) as exc:
                self._abort(_PROTOCOL_ERROR, str(exc) or "malformed frame")
                return
        del buffer[:pos]

    # -- frames in -------------------------------------------------------------------------
    def _frame_received(self, ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._headers_in_progress is not None and ftype != _CONTINUATION:
            raise _ConnectionError("a header block was interrupted by another frame")
        if ftype == _DATA:
            self._on_data(flags, stream_id, payload)
        elif ftype == _HEADERS:
            self._on_headers(flags, stream_id, payload)
        elif ftype == _CONTINUATION:
            self._on_continuation(flags, stream_id, payload)
        elif ftype == _RST_STREAM:
            stream = self.streams.pop(stream_id, None)
            if stream is not None:
                stream.reset()
        elif ftype == _SETTINGS:
            if not flags & _ACK:
                self._on_settings(payload)
        elif ftype == _PING:
            if not flags & _ACK:
                self.write(_frame(_PING, _ACK, 0, payload))
        elif ftype == _WINDOW_UPDATE:
            self._on_window_update(stream_id, int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
        elif ftype == _GOAWAY:
            self._closing = True  # the peer opens no more streams; the open ones finish
        elif ftype == _PUSH_PROMISE:
            raise _ConnectionError("a client may not push")
        # PRIORITY and unknown frame types are ignored (RFC 9113 5.3.2, 4.1).

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        flow_length = len(payload)
        self._received += flow_length
        if self._received >= _REFILL_AT:
            self.window_update(0, self._received)
            self._received = 0
        if flags & _PADDED:
            payload = _unpad(payload)
        stream = self.streams.get(stream_id)
        if stream is None:
            return  # a stream we finished or reset: counted for the connection window only
        if payload:
            stream.data(payload, flow_length)
        if flags & _END_STREAM:
            stream.remote_end()

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if flags & _PADDED:
            payload = _unpad(payload)
        if flags & _PRIORITY_FLAG:
            payload = payload[5:]
        if flags & _END_HEADERS:
            self._headers_complete(stream_id, flags, payload)
        else:
            self._headers_in_progress = (stream_id, flags, bytearray(payload))

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        progress = self._headers_in_progress
        if progress is None or progress[0] != stream_id:
            raise _ConnectionError("CONTINUATION without its HEADERS")
        progress[2].extend(payload)
        if len(progress[2]) > _MAX_HEADER_BLOCK:
            raise _ConnectionError("header block too large")
        if flags & _END_HEADERS:
            self._headers_in_progress = None
            self._headers_complete(stream_id, progress[1], bytes(progress[2]))

    def _headers_complete(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._decoder.decode(block)  # always: the dynamic table must follow the peer's
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers from the client (gRPC clients send none): end of its side
            if flags & _END_STREAM:
                stream.remote_end()
            return
        if stream_id <= self._last_stream_id or stream_id % 2 == 0:
            if stream_id % 2 == 0:
                raise _ConnectionError(f"stream {stream_id} is not a client stream")
            return  # late headers for a stream already closed
        self._last_stream_id = stream_id
        path = b""
        for name, value in headers:
            if name == b":path":
                path = value
                break
        stream = _Stream(self, stream_id, self.server.methods.get(path))
        self.streams[stream_id] = stream
        method = stream._method
        if isinstance(method, SessionMethod):
            stream._session = method.open()
            if flags & _END_STREAM:
                stream.remote_end()
            return
        if flags & _END_STREAM:
            stream.remote_end()
        stream.task = self.loop.create_task(stream.run())

    def _on_settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise _ConnectionError("SETTINGS payload is not a multiple of 6")
        for i in range(0, len(payload), 6):
            key = int.from_bytes(payload[i:i + 2], "big")
            value = int.from_bytes(payload[i + 2:i + 6], "big")
            if key == _SETTINGS_INITIAL_WINDOW:
                if value > _MAX_WINDOW:
                    raise _ConnectionError("initial window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == _SETTINGS_MAX_FRAME:
                self._peer_max_frame = value
            # SETTINGS_HEADER_TABLE_SIZE is the peer's decoder's: our blocks never index.
        self.write(_frame(_SETTINGS, _ACK, 0))
        self._flush_blocked()

    def _on_window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise _ConnectionError("connection window overflow")
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
        self._flush_blocked()

    def _flush_blocked(self) -> None:
        for stream in list(self.blocked):
            stream.flush()

    # -- frames out ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue frames; they leave in one send per loop iteration. Under load the answers of many
        streams, and a stream's headers with its first message, share one system call (the
        send was the largest single cost in a profile: 14% of a worker)."""
        if self._transport is None:
            return
        out = self._out
        out.append(data)
        if len(out) == 1:
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        out = self._out
        if self._transport is not None and out:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def window_update(self, stream_id: int, increment: int) -> None:
        self.write(_frame(_WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big")))

    def write_headers(self, stream_id: int, block: bytes, *, end_stream: bool) -> None:
        flags = _END_HEADERS | (_END_STREAM if end_stream else 0)
        if len(block) <= self._peer_max_frame:
            self.write(_frame(_HEADERS, flags, stream_id, block))
            return
        size = self._peer_max_frame
        chunks = [block[i:i + size] for i in range(0, len(block), size)]
        frames = [_frame(_HEADERS, flags & ~_END_HEADERS, stream_id, chunks[0])]
        frames += [_frame(_CONTINUATION, 0, stream_id, c) for c in chunks[1:-1]]
        frames.append(_frame(_CONTINUATION, _END_HEADERS, stream_id, chunks[-1]))
        self.write(b"".join(frames))

    def send_data(self, stream: _Stream, data: bytes) -> bool:
        """Send all of ``data`` now if the windows and frame size allow; True if sent."""
        n = len(data)
        if n > stream.send_window or n > self._send_window or n > self._peer_max_frame:
            return False
        stream.send_window -= n
        self._send_window -= n
        self.write(_frame(_DATA, 0, stream.id, data))
        return True

    def send_some(self, stream: _Stream, data: bytearray) -> int:
        """Send as much of ``data`` as the windows allow, in frames; return the bytes sent."""
        sent = 0
        frames = []
        while sent < len(data):
            n = min(len(data) - sent, stream.send_window, self._send_window, self._peer_max_frame)
            if n <= 0:
                break
            frames.append(_frame(_DATA, 0, stream.id, bytes(data[sent:sent + n])))
            stream.send_window -= n
            self._send_window -= n
            sent += n
        if frames:
            self.write(b"".join(frames))
        return sent

    def forget(self, stream: _Stream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
        self.blocked.discard(stream)

    def goaway(self, code: int = _NO_ERROR, message: str = "") -> None:
        payload = self._last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big") + message.encode()
        self.write(_frame(_GOAWAY, 0, 0, payload))

    def _abort(self, code: int, message: str) -> None:
        log.warning("closing an HTTP/2 connection: %s", message)
        self.goaway(code, message)
        self.close()

    def close(self) -> None:
        self._flush()
        if self._transport is not None:
            self._transport.close()


class _ConnectionError(Exception):
    """A connection-level protocol error (answered with GOAWAY)."""


def _unpad(payload: bytes) -> bytes:
    pad = payload[0]
    if pad >= len(payload):
        raise _ConnectionError("padding longer than the frame")
    return payload[1:len(payload) - pad]


class H2GrpcServer:
    """``methods``: gRPC path (``/package.Service/Method``) -> StreamMethod, SessionMethod or
    UnaryMethod."""

    def __init__(self, methods: dict[str, StreamMethod | UnaryMethod | SessionMethod], *,
                 max_receive_message_length: int) -> None:
        self.methods = {path.encode(): method for path, method in methods.items()}
        self.max_receive = max_receive_message_length
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; return the port (the one chosen when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float) -> None:
        """Stop listening, tell every peer (GOAWAY), let open calls finish for ``grace`` seconds,
        then close the connections (cancelling what is left)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.goaway()
        deadline = asyncio.get_running_loop().time() + grace
        while any(conn.streams for conn in self.connections) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
