"""One pipelined client connection to one pool member.

Requests get increasing ids and are written back to back without waiting; the server answers
in order and each answer resolves the future registered under its id. A connection that
breaks fails every pending future with MemberError, which the pool client turns into misses.
After HELLO, when the member offers its heap file (same node), the connection maps it and
the pool client switches that member to the shared-memory operations.
"""

from __future__ import annotations

import asyncio
import re

from runtime_components.kv import protocol as p
from runtime_components.kv.framing import FrameAssembler
from runtime_components.kv.protocol import Op, ProtocolError
from runtime_components.kv.shm import MappedHeap

__all__ = ["MemberConnection", "MemberError", "split_host_port"]

_HOST_PORT = re.compile(r"^\[?(?P<host>[^\[\]]+)\]?:(?P<port>\d+)$")


class MemberError(Exception):
    """A member did not answer usefully (refused, timed out, closed, or sent an error frame)."""


def split_host_port(member: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    match = _HOST_PORT.match(member)
    if not match:
        raise ValueError(f"member {member!r} is not host:port")
    return match.group("host"), int(match.group("port"))


class _ClientProtocol(asyncio.BufferedProtocol):
    def __init__(self, max_payload: int) -> None:
        self.frames = FrameAssembler(self._on_frame, max_payload)
        self.pending: dict[int, asyncio.Future[tuple[int, bytearray]]] = {}
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        why = "closed by the member" if exc is None else (str(exc) or type(exc).__name__)
        self._fail_all(MemberError(f"connection lost: {why}"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.frames.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self.frames.buffer_updated(nbytes)
        except ProtocolError as err:
            self._fail_all(MemberError(f"bad frame from member: {err.message}"))
            assert self.transport is not None
            self.transport.close()

    def _on_frame(self, op: int, request_id: int, payload: bytearray) -> None:
        future = self.pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result((op, payload))

    def _fail_all(self, err: MemberError) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(err)


class MemberConnection:
    """A connected, HELLO-negotiated connection; `call` sends one request and awaits its answer."""

    def __init__(self, name: str, protocol: _ClientProtocol) -> None:
        self.name = name
        self._protocol = protocol
        self._next_id = 1
        self.heap: MappedHeap | None = None
        self.page_bytes = 0

    @classmethod
    async def open(
        cls, name: str, *, connect_timeout: float, node_id: str, want_shm: bool, max_payload: int = 1 << 34
    ) -> MemberConnection:
        host, port = split_host_port(name)
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _ClientProtocol(max_payload), host, port), connect_timeout
            )
        except (TimeoutError, OSError) as err:
            raise MemberError(f"cannot connect to {name}: {err or 'timed out'}") from None
        conn = cls(name, protocol)
        try:
            answer = await conn.call(Op.HELLO, [p.encode_hello_request(node_id, want_shm)], connect_timeout)
            page, heap_size, _, shm_path = p.decode_hello_response(answer)
            if shm_path:
                try:
                    conn.heap = MappedHeap(shm_path, heap_size, page)
                except OSError:
                    conn.heap = None  # offered but not reachable from here (other mount): use TCP
            conn.page_bytes = page
        except (MemberError, ProtocolError) as err:
            conn.close()
            raise MemberError(f"hello to {name} failed: {err}") from None
        return conn

    @property
    def alive(self) -> bool:
        return not self._protocol.lost

    def send(self, op: int, parts: list[bytes | bytearray | memoryview]) -> asyncio.Future[tuple[int, bytearray]]:
        """Write one request now; the future resolves with (op, payload) of its answer."""
        transport = self._protocol.transport
        if transport is None or self._protocol.lost or transport.is_closing():
            raise MemberError(f"connection to {self.name} is closed")
        request_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        future: asyncio.Future[tuple[int, bytearray]] = asyncio.get_running_loop().create_future()
        self._protocol.pending[request_id] = future
        transport.write(p.encode_frame(op, request_id, sum(len(x) for x in parts)))
        for part in parts:
            transport.write(part)
        return future

    async def call(self, op: int, parts: list[bytes | bytearray | memoryview], timeout: float) -> bytearray:
        """Send and await the answer's payload; an error frame or a timeout raises MemberError."""
        future = self.send(op, parts)
        try:
            answer_op, payload = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise MemberError(f"{self.name} did not answer {Op.NAMES.get(op, op)} within {timeout * 1000:.0f} ms") from None
        if answer_op == Op.ERROR:
            err = p.decode_error(payload)
            raise MemberError(f"{self.name} refused {Op.NAMES.get(op, op)}: {err.message} (code {err.code})")
        if answer_op != op | p.RESPONSE_BIT:
            raise MemberError(f"{self.name} answered op {answer_op} to op {op}")
        return payload

    def send_and_forget(self, op: int, parts: list[bytes | bytearray | memoryview]) -> None:
        """Send a request whose answer nobody awaits (e.g. SHM_RELEASE); failures are ignored."""
        try:
            future = self.send(op, parts)
        except MemberError:
            return
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
        if self.heap is not None:
            self.heap.close()
            self.heap = None
