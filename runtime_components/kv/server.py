"""One KV-cache pool member: an asyncio TCP server speaking `protocol` over a `BlockStore`.

Each connection is a BufferedProtocol: frames are reassembled in place (`framing`) and
handled synchronously as they complete (the store is in memory, so there is nothing to
await); responses go out in request order, which is what lets clients pipeline. Large
payloads are written as separate buffers after a small header, never joined.

Shared-memory leases: SHM_GET pins the blocks it names until SHM_RELEASE; SHM_ALLOC reserves
pages until SHM_COMMIT. A connection that closes releases its pins and abandons its
reservations, so a crashed client leaks nothing.

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
from runtime_components.kv.framing import FrameAssembler
from runtime_components.kv.metrics import ServerCounters, StoreCollector
from runtime_components.kv.protocol import ErrorCode, Op, ProtocolError, ShmEntry
from runtime_components.kv.shm import node_identity
from runtime_components.kv.store import Block, BlockStore

__all__ = ["KVServer"]

log = logging.getLogger(__name__)

Payload = bytearray | memoryview  #: valid only during the handler call (a reused buffer)

_HEADER_OVERHEAD = 64 << 10  # room for a batch's metadata table next to its blocks
_MAX_FRAME = 1 << 30  # clients send a few MiB per request; refuse absurd lengths before allocating


class _Connection(asyncio.BufferedProtocol):
    """Protocol state of one client connection."""

    def __init__(self, server: KVServer) -> None:
        self.server = server
        self.store = server.store
        cfg = server.config
        # A request never needs more than a batch of blocks, nor more than the whole heap.
        limit = min(cfg.max_batch * (cfg.max_block_bytes + 32), server.store.heap.size, _MAX_FRAME) + _HEADER_OVERHEAD
        self.frames = FrameAssembler(self._on_frame, limit, reuse_buffer=True)
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

    # asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
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
        try:
            self.frames.buffer_updated(nbytes)
        except ProtocolError as err:  # the byte stream is unusable: say why, then hang up
            self._error(0, err)
            assert self.transport is not None
            self.transport.close()

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
        for key in keys:
            found = self.store.read(key)
            if found is None:
                table.append((0, 0, 0))
            else:
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
        self.connections: set[_Connection] = set()
        self.draining = False
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(self.store, self.counters, lambda: len(self.connections)))
        self._server: asyncio.Server | None = None
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
        log.info("kv pool member on %s:%d (metrics %d), %d bytes, %s eviction, shm %s",
                 self.config.host, self.port, self.metrics_port, self.store.heap.size,
                 self.config.eviction.policy, self.store.heap.path or "off")

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
