"""One KV-cache pool member: an asyncio TCP server speaking `protocol` over a `BlockStore`.

Each connection is a BufferedProtocol: frames are reassembled in place (`framing`) and
handled synchronously as they complete (the store is in memory, so there is nothing to
await); responses go out in request order, which is what lets clients pipeline. Large
payloads are written as separate buffers after a small header, never joined.

Shared-memory leases: SHM_GET pins the blocks it names until SHM_RELEASE; SHM_ALLOC reserves
pages until SHM_COMMIT. A connection that closes releases its pins and abandons its
reservations, so a crashed client leaks nothing.

Memory is spent only on bytes that arrived. A frame's payload buffer grows with the bytes
received (`framing`, incremental); its announced length is first reserved from the member-wide
`ReceiveBudget` (``maxBufferedBytes``); a connection that finds the budget spent is not read
until it frees up. One connection's frame is at most ``maxRequestSize``; a frame that has not
fully arrived ``frameTimeoutSeconds`` after its first byte (or after its reservation was granted)
is answered with a TIMEOUT error and the connection closed. A client that does not read its
answers stops being read (asyncio's write high-water mark pauses us), so responses cannot pile
up either; a GET answers at most ``maxRequestSize`` bytes of blocks, the rest as misses. Buffers
are dropped when a connection closes, when it idles, and after a frame bigger than the 8 MiB a
connection may keep between requests.

Graceful shutdown (`stop`, wired to SIGTERM by the CLI): stop accepting, answer requests
that arrive meanwhile with SHUTTING_DOWN (clients count it as a miss), wait up to
``drain_seconds`` for frames already in flight to complete and their responses to flush,
then close every connection and unlink the shared heap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from aibrix_spec.components.kv import KVServerConfig
from runtime_components.kv import protocol as p
from runtime_components.kv.budget import ReceiveBudget
from runtime_components.kv.framing import FrameAssembler
from runtime_components.kv.metrics import ServerCounters, StoreCollector
from runtime_components.kv.protocol import ErrorCode, Op, ProtocolError, ShmEntry
from runtime_components.kv.shm import node_identity
from runtime_components.kv.store import Block, BlockStore

__all__ = ["KVServer"]

log = logging.getLogger(__name__)

Payload = bytearray | memoryview  #: valid only during the handler call (a reused buffer)

_KEEP_SCRATCH = 8 << 20  # a connection keeps its receive buffer between frames up to this size
_IDLE_RELEASE_S = 2.0  # ... and drops it after this long without a frame


class _Connection(asyncio.BufferedProtocol):
    """Protocol state of one client connection."""

    def __init__(self, server: KVServer) -> None:
        self.server = server
        self.store = server.store
        self.frames = FrameAssembler(self._on_frame, server.max_frame, reuse_buffer=True, incremental=True,
                                     on_header=self._on_header)
        self.handlers: dict[int, Callable[[Payload], list[bytes]]] = {
            Op.HELLO: self._hello,
            Op.EXISTS: self._exists,
            Op.GET: self._get,
            Op.PUT: self._put,
            Op.SHM_GET: self._shm_get,
            Op.SHM_RELEASE: self._shm_release,
            Op.SHM_ALLOC: self._shm_alloc,
            Op.SHM_COMMIT: self._shm_commit,
        }
        self.transport: asyncio.Transport | None = None
        self.shm = False
        self.pinned: dict[int, list[Block]] = {}
        self.reserved: dict[int, list[tuple[int, Block | None, int]]] = {}
        self._next_lease = 1
        self.reserved_bytes = 0  # receive budget this connection holds
        self.frame_started: float | None = None  # when the frame being received started (timeout clock)
        self.last_frame_at = 0.0
        self._paused: set[str] = set()  # why reading is paused: "budget", "writes"
        self._granted = self._budget_granted  # one bound method, so the budget can find it again
        self._wanted = 0

    # asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.last_frame_at = self.server.now()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if "budget" in self._paused:
            self.server.budget.cancel(self._granted)
        self._paused.clear()
        self.frames = FrameAssembler(self._on_frame, 0)  # drop the buffers now, not at garbage collection
        self._return_budget(self.reserved_bytes)
        for blocks in self.pinned.values():
            for block in blocks:
                self.store.unpin(block)
        for entries in self.reserved.values():
            for _, reservation, _ in entries:
                if reservation is not None:
                    self.store.abort(reservation)
        self.pinned.clear()
        self.reserved.clear()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.frames.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        done = self.frames.frames_done
        if self.frame_started is None:
            self.frame_started = self.server.now()
        try:
            self.frames.buffer_updated(nbytes)
        except ProtocolError as err:  # the byte stream is unusable: say why, then hang up
            self._error(0, err)
            assert self.transport is not None
            self.transport.close()
            return
        if self.frames.frames_done != done:
            self.last_frame_at = self.server.now()
            self.frame_started = self.last_frame_at if self.frames.mid_frame else None
            if self.reserved_bytes > _KEEP_SCRATCH and not self.frames.mid_frame:
                self.release_buffers()
        if "budget" in self._paused:
            self.frame_started = None  # waiting on us, not on the client

    # flow control ----------------------------------------------------------------------------

    def _on_header(self, length: int) -> None:
        """A frame of ``length`` bytes is announced: reserve it before reading its payload."""
        if length <= self.reserved_bytes:
            return
        self._wanted = length - self.reserved_bytes
        if self.server.budget.take(self._wanted, self._granted):
            self.reserved_bytes = length
        else:
            self._pause("budget")

    def _budget_granted(self) -> None:
        self.reserved_bytes += self._wanted
        self._wanted = 0
        self.frame_started = self.server.now()
        self._resume("budget")

    def _return_budget(self, amount: int) -> None:
        if amount:
            self.reserved_bytes -= amount
            self.server.budget.give(amount)

    def release_buffers(self) -> None:
        """Between frames: hand the receive buffer and its reservation back."""
        if not self.frames.mid_frame:
            self.frames.release()
            self._return_budget(self.reserved_bytes)

    def timed_out(self) -> None:
        """The frame in flight did not arrive in time: say so, then hang up."""
        self.server.counters.frame_timeouts += 1
        self._error(0, ProtocolError(ErrorCode.TIMEOUT, "frame not received within "
                                     f"{self.server.config.frame_timeout_seconds:g} s of its first byte"))
        assert self.transport is not None
        self.transport.close()

    def _pause(self, why: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(why)

    def _resume(self, why: str) -> None:
        self._paused.discard(why)
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def pause_writing(self) -> None:  # the client is not reading its answers: stop reading its requests
        self._pause("writes")

    def resume_writing(self) -> None:
        self._resume("writes")

    @property
    def idle(self) -> bool:
        return not self.frames.mid_frame and (self.transport is None or self.transport.get_write_buffer_size() == 0)

    # frames ----------------------------------------------------------------------------------

    def _on_frame(self, op: int, request_id: int, payload: Payload) -> None:
        self.server.counters.requests[op] += 1
        if self.server.draining:
            self._error(request_id, ProtocolError(ErrorCode.SHUTTING_DOWN, "pool member is shutting down"))
            return
        handler = self.handlers.get(op)
        if handler is None:
            self._error(request_id, ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown operation {op}"))
            return
        try:
            parts = handler(payload)
        except ProtocolError as err:
            self._error(request_id, err)
            return
        self._send(op | p.RESPONSE_BIT, request_id, parts)

    def _send(self, op: int, request_id: int, parts: list[bytes]) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        self.transport.write(p.encode_frame(op, request_id, sum(len(x) for x in parts)))
        for part in parts:
            self.transport.write(part)

    def _error(self, request_id: int, err: ProtocolError) -> None:
        self.server.counters.errors[err.code] += 1
        self._send(Op.ERROR, request_id, [p.encode_error(err.code, err.message)])

    # operations ------------------------------------------------------------------------------

    def _hello(self, payload: Payload) -> list[bytes]:
        node, wants_shm = p.decode_hello_request(payload)
        heap = self.store.heap
        path = heap.path if wants_shm and node == self.server.node_id else None
        self.shm = path is not None
        return [p.encode_hello_response(heap.page_bytes, heap.size, self.server.node_id, path or "")]

    def _exists(self, payload: Payload) -> list[bytes]:
        keys = p.decode_keys(payload, self.server.config.max_batch, "exists")
        return [p.encode_statuses([1 if self.store.exists(k) else 0 for k in keys])]

    def _get(self, payload: Payload) -> list[bytes]:
        keys = p.decode_keys(payload, self.server.config.max_batch, "get")
        table: list[tuple[int, int, int]] = []
        data: list[bytes] = []
        budget = self.server.max_frame  # one answer is bounded like one request (a key may repeat)
        for key in keys:
            found = self.store.read(key) if budget > 0 else None
            if found is None or len(found[0]) > budget:
                table.append((0, 0, 0))  # a miss costs the client a recompute, never an error
            else:
                budget -= len(found[0])
                table.append((1, found[1], len(found[0])))
                data.append(found[0])
        return [p.encode_get_response(table), *data]

    def _put(self, payload: Payload) -> list[bytes]:
        metas = p.decode_put_request(payload, self.server.config.max_batch)
        view = memoryview(payload)
        statuses = [self.store.put(m.key, view[m.offset : m.offset + m.length], m.crc, m.warm) for m in metas]
        return [p.encode_statuses(statuses)]

    def _require_shm(self, what: str) -> None:
        if not self.shm:
            raise ProtocolError(
                ErrorCode.SHM_UNAVAILABLE,
                f"{what}: shared memory was not negotiated on this connection (HELLO from the same node first)",
            )

    def _lease(self) -> int:
        lease = self._next_lease
        self._next_lease += 1
        return lease

    def _shm_get(self, payload: Payload) -> list[bytes]:
        self._require_shm("shm_get")
        keys = p.decode_keys(payload, self.server.config.max_batch, "shm_get")
        entries: list[ShmEntry] = []
        pinned: list[Block] = []
        for key in keys:
            block = self.store.lookup(key)
            if block is None:
                entries.append(ShmEntry(0, 0, None, ()))
                continue
            if block.crc is None:  # written without one: compute it once, so every reader can verify
                block.crc = self.store.checksum(block)
            self.store.pin(block)
            pinned.append(block)
            self.store.counters.bytes_read += block.length
            entries.append(ShmEntry(1, block.length, block.crc, tuple(block.pages)))
        lease = self._lease() if pinned else 0
        if pinned:
            self.pinned[lease] = pinned
        return [p.encode_shm_entries(lease, entries, with_crc=True)]

    def _shm_release(self, payload: Payload) -> list[bytes]:
        lease = p.decode_lease(payload)
        blocks = self.pinned.pop(lease, None)
        if blocks is None:
            raise ProtocolError(ErrorCode.UNKNOWN_LEASE, f"shm_release: lease {lease} is not held on this connection")
        for block in blocks:
            self.store.unpin(block)
        return []

    def _shm_alloc(self, payload: Payload) -> list[bytes]:
        self._require_shm("shm_alloc")
        requests = p.decode_shm_alloc_request(payload, self.server.config.max_batch)
        entries: list[ShmEntry] = []
        reserved: list[tuple[int, Block | None, int]] = []
        for key, length, warm in requests:
            status, block = self.store.reserve(key, length, warm)
            reserved.append((key, block, status))
            entries.append(ShmEntry(status, length, None, tuple(block.pages) if block else ()))
        lease = self._lease()
        self.reserved[lease] = reserved
        return [p.encode_shm_entries(lease, entries, with_crc=False)]

    def _shm_commit(self, payload: Payload) -> list[bytes]:
        lease, crcs = p.decode_shm_commit_request(payload, self.server.config.max_batch)
        reserved = self.reserved.get(lease)
        if reserved is None:
            raise ProtocolError(ErrorCode.UNKNOWN_LEASE, f"shm_commit: lease {lease} is not an open allocation")
        if len(crcs) != len(reserved):
            raise ProtocolError(
                ErrorCode.MALFORMED, f"shm_commit: {len(crcs)} checksums for an allocation of {len(reserved)} blocks"
            )
        del self.reserved[lease]
        statuses = []
        for (key, block, status), crc in zip(reserved, crcs):
            if block is None:
                self.store.counters.puts[status] += 1
                statuses.append(status)
            else:
                statuses.append(self.store.commit(key, block, crc, verify=True))
        return [p.encode_statuses(statuses)]


class KVServer:
    """A pool member: block protocol on one port, /metrics and /healthz on another."""

    def __init__(self, config: KVServerConfig, *, node_id: str | None = None) -> None:
        self.config = config
        self.node_id = node_id or node_identity()
        self.store = BlockStore(
            config.capacity_bytes,
            config.page_bytes,
            policy=config.eviction.policy,
            small_fraction=config.eviction.small_queue_fraction,
            max_block_bytes=config.max_block_bytes,
            shm_dir=config.shm.dir if config.shm.enabled else None,
        )
        self.counters = ServerCounters()
        self.max_frame = min(config.max_request_bytes, self.store.heap.size + (64 << 10))
        self.budget = ReceiveBudget(config.max_buffered)
        self.connections: set[_Connection] = set()
        self.draining = False
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(self.store, self.counters, lambda: len(self.connections), self.budget))
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._http: web.AppRunner | None = None
        self.port = 0
        self.metrics_port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.config.host, self.config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, self.config.host, self.config.metrics_port)
        await site.start()
        self.metrics_port = self._http.addresses[0][1]
        self._sweeper = asyncio.create_task(self._sweep(), name="kv-frame-sweeper")
        log.info("kv pool member on %s:%d (metrics %d), %d bytes, %s eviction, shm %s",
                 self.config.host, self.port, self.metrics_port, self.store.heap.size,
                 self.config.eviction.policy, self.store.heap.path or "off")

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    async def _sweep(self) -> None:
        """Close connections whose frame is overdue; drop idle connections' buffers."""
        timeout = self.config.frame_timeout_seconds
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = self.now()
            for conn in list(self.connections):
                if conn.frame_started is not None and now - conn.frame_started > timeout:
                    conn.timed_out()
                elif conn.reserved_bytes and not conn.frames.mid_frame and now - conn.last_frame_at > _IDLE_RELEASE_S:
                    conn.release_buffers()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if self.draining else 200, text="draining\n" if self.draining else "ok\n")

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Drain and close (idempotent)."""
        if self._server is None:
            return
        self.draining = True
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        budget = self.config.drain_seconds if drain_seconds is None else drain_seconds
        deadline = asyncio.get_running_loop().time() + budget
        while any(not c.idle for c in self.connections) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        await self._server.wait_closed()
        self._server = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        self.store.close()
