"""The pool client engines use: placement, batching, pipelining, and misses instead of errors.

Each key goes to its rendezvous owner (`members`); a call's keys are grouped per owner, cut
into batches of at most ``max_batch`` keys and ``max_request_bytes`` of blocks (for gets,
estimated from the blocks put and got so far), and every batch of every member is in flight at once
(one pipelined connection per member), so a member works on one batch while the next is on
the wire. A member that refuses, times out (``timeout_ms``), breaks
the connection or answers an error frame is marked dead for ``dead_member_backoff_seconds``:
its keys are misses and its puts are dropped meanwhile. Nothing here raises to the engine
for a pool failure: a KV pool is an optimisation, never a dependency.

Transport per member: TCP frames (every block CRC-checked on arrival), or, when the member
runs on the same node and offers its heap file, the shared-memory operations: the client
copies blocks straight between the caller's buffers and the member's pages (one copy).

`BlockingKVPoolClient` runs the same client on a private event-loop thread for synchronous
callers (vLLM's connector hooks, simulated engines).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aibrix_spec.components.kv import KVClientConfig
from runtime_components.kv import protocol as p
from runtime_components.kv.connection import MemberConnection, MemberError
from runtime_components.kv.members import MemberSource, member_seed, owner, source_from_config
from runtime_components.kv.protocol import Op, ProtocolError
from runtime_components.kv.shm import node_identity
from runtime_components.kv.store import PutStatus

__all__ = ["BlockingKVPoolClient", "ClientStats", "KVPoolClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Buffer = bytes | bytearray | memoryview


@dataclass
class ClientStats:
    hits: int = 0
    misses: int = 0
    stored: int = 0
    dropped_puts: int = 0
    member_failures: int = 0
    checksum_errors: int = 0
    shm_blocks: int = 0
    tcp_blocks: int = 0


class KVPoolClient:
    """Async client of the whole pool."""

    def __init__(
        self,
        config: KVClientConfig,
        *,
        source: MemberSource | None = None,
        node_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._source = source or source_from_config(config.members)
        self._node_id = node_id or node_identity()
        self._clock = clock
        self._timeout = config.timeout_ms / 1000
        self._connections: dict[str, MemberConnection] = {}
        self._opening: dict[str, asyncio.Future[MemberConnection | None]] = {}
        self._dead_until: dict[str, float] = {}
        self._seeds: dict[str, int] = {}
        self.stats = ClientStats()
        self._block_bytes_seen = 0  # typical block size, to cut gets into byte-sized batches
        self.last_errors: list[str] = []  # the latest few failure reasons, for logs and tests

    # -- placement and connections -----------------------------------------------------------

    async def _placement(self, keys: Sequence[int]) -> dict[str, list[int]]:
        """Positions of ``keys`` grouped by owner (over all known members, dead or alive)."""
        members = await self._source.members()
        if not members:
            return {}
        seeded = [(m, self._seeds.get(m) or self._seeds.setdefault(m, member_seed(m))) for m in members]
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(owner(key, seeded), []).append(i)
        return groups

    async def _connection(self, member: str) -> MemberConnection | None:
        if self._dead_until.get(member, float("-inf")) > self._clock():
            return None
        conn = self._connections.get(member)
        if conn is not None and conn.alive:
            return conn
        opening = self._opening.get(member)
        if opening is None:
            opening = asyncio.ensure_future(self._open(member))
            self._opening[member] = opening
            opening.add_done_callback(lambda _: self._opening.pop(member, None))
        return await asyncio.shield(opening)

    async def _open(self, member: str) -> MemberConnection | None:
        try:
            conn = await MemberConnection.open(
                member,
                connect_timeout=self.config.connect_timeout_ms / 1000,
                node_id=self._node_id,
                want_shm=self.config.shared_memory == "auto",
            )
        except MemberError as err:
            self._fail(member, err)
            return None
        self._connections[member] = conn
        return conn

    def _fail(self, member: str, err: Exception) -> None:
        self.stats.member_failures += 1
        self.last_errors = (self.last_errors + [str(err)])[-8:]
        backoff = self.config.dead_member_backoff_seconds
        self._dead_until[member] = self._clock() + backoff
        # At most one line per member per backoff: the operator's only sign that hits became misses.
        log.warning("kv pool member %s marked dead for %.1f s (its blocks are misses meanwhile): %s",
                    member, backoff, err)
        conn = self._connections.pop(member, None)
        if conn is not None:
            conn.close()

    def _batches(self, positions: list[int], sizes: Sequence[int] | None) -> list[list[int]]:
        """Cut positions into runs of at most max_batch keys and max_request_bytes bytes."""
        limit = int(self.config.max_request_bytes)
        out: list[list[int]] = []
        current: list[int] = []
        used = 0
        for i in positions:
            size = sizes[i] if sizes is not None else self._block_bytes_seen
            if current and (len(current) >= self.config.max_batch or used + size > limit):
                out.append(current)
                current, used = [], 0
            current.append(i)
            used += size
        if current:
            out.append(current)
        return out

    async def _each_batch(
        self,
        keys: Sequence[int],
        work: Callable[[MemberConnection, list[int]], Coroutine[Any, Any, None]],
        sizes: Sequence[int] | None = None,
    ) -> None:
        """Run ``work(conn, positions)`` for every batch of every owner, all at once."""
        groups = await self._placement(keys)

        async def member_batches(member: str, positions: list[int]) -> None:
            conn = await self._connection(member)
            if conn is None:
                return
            results = await asyncio.gather(
                *(work(conn, batch) for batch in self._batches(positions, sizes)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, (MemberError, ProtocolError, OSError)):
                    self._fail(member, result)  # batches that completed keep their answers
                    break
                if isinstance(result, BaseException):
                    raise result

        await asyncio.gather(*(member_batches(m, pos) for m, pos in groups.items()))

    # -- reads -------------------------------------------------------------------------------

    async def exists(self, keys: Sequence[int]) -> list[bool]:
        """Which blocks the pool holds (a dead member's blocks count as absent)."""
        found = [False] * len(keys)

        async def work(conn: MemberConnection, positions: list[int]) -> None:
            answer = await conn.call(Op.EXISTS, [p.encode_keys([keys[i] for i in positions])], self._timeout)
            for i, flag in zip(positions, p.decode_statuses(answer, "exists response")):
                found[i] = bool(flag)

        await self._each_batch(keys, work, [0] * len(keys))  # no payload: cut by count only
        return found

    async def lookup_prefix(self, keys: Sequence[int]) -> int:
        """How many leading blocks of a chained-hash prefix the pool holds."""
        held = 0
        for flag in await self.exists(keys):
            if not flag:
                break
            held += 1
        return held

    async def get(self, keys: Sequence[int]) -> list[memoryview | None]:
        """Each block's bytes, or None for a miss."""
        out: list[memoryview | None] = [None] * len(keys)
        await self._read(keys, out, None)
        return out

    async def get_into(self, keys: Sequence[int], buffers: Sequence[memoryview | bytearray]) -> list[bool]:
        """Copy each found block into the caller's buffer (shared memory: the only copy)."""
        if len(buffers) != len(keys):
            raise ValueError(f"get_into: {len(keys)} keys but {len(buffers)} buffers")
        out: list[memoryview | None] = [None] * len(keys)
        await self._read(keys, out, [memoryview(b).cast("B") for b in buffers])
        return [x is not None for x in out]

    async def _read(self, keys: Sequence[int], out: list[memoryview | None], dest: list[memoryview] | None) -> None:
        async def work(conn: MemberConnection, positions: list[int]) -> None:
            batch = [keys[i] for i in positions]
            if conn.heap is not None:
                await self._read_shm(conn, batch, positions, out, dest)
            else:
                await self._read_tcp(conn, batch, positions, out, dest)

        await self._each_batch(keys, work)
        hits = sum(x is not None for x in out)
        if hits:
            self._block_bytes_seen = sum(len(x) for x in out if x is not None) // hits
        self.stats.hits += hits
        self.stats.misses += len(keys) - hits

    async def _read_tcp(
        self, conn: MemberConnection, batch: list[int], positions: list[int],
        out: list[memoryview | None], dest: list[memoryview] | None,
    ) -> None:
        payload = await conn.call(Op.GET, [p.encode_keys(batch)], self._timeout)
        view = memoryview(payload)
        for i, meta in zip(positions, p.decode_get_response(payload, batch)):
            if not meta.status:
                continue
            block = view[meta.offset : meta.offset + meta.length]
            if meta.crc is not None and zlib.crc32(block) != meta.crc:
                self.stats.checksum_errors += 1
                continue
            if dest is not None:
                if len(dest[i]) < meta.length:
                    raise ValueError(f"get_into: buffer {i} holds {len(dest[i])} bytes, block has {meta.length}")
                dest[i][: meta.length] = block
                block = dest[i][: meta.length]
            out[i] = block
            self.stats.tcp_blocks += 1

    async def _read_shm(
        self, conn: MemberConnection, batch: list[int], positions: list[int],
        out: list[memoryview | None], dest: list[memoryview] | None,
    ) -> None:
        heap = conn.heap
        assert heap is not None
        lease, entries = p.decode_shm_get_response(await conn.call(Op.SHM_GET, [p.encode_keys(batch)], self._timeout))
        try:
            for i, entry in zip(positions, entries):
                if not entry.status:
                    continue
                if dest is None:
                    target = memoryview(bytearray(entry.length))
                elif len(dest[i]) < entry.length:
                    raise ValueError(f"get_into: buffer {i} holds {len(dest[i])} bytes, block has {entry.length}")
                else:
                    target = dest[i][: entry.length]
                try:
                    heap.read_into(entry.pages, entry.length, target)
                except ValueError as err:  # a member naming pages it does not have is broken
                    raise MemberError(f"{conn.name}: {err}") from None
                if self.config.verify_shm_checksums and entry.crc is not None and zlib.crc32(target) != entry.crc:
                    self.stats.checksum_errors += 1
                    continue
                out[i] = target
                self.stats.shm_blocks += 1
        finally:
            if lease:
                conn.send_and_forget(Op.SHM_RELEASE, [lease.to_bytes(4, "little")])

    # -- writes ------------------------------------------------------------------------------

    async def put(self, blocks: Sequence[tuple[int, Buffer]], *, warm: bool = False) -> list[int | None]:
        """Store blocks; per block a `PutStatus` code, or None when its member was unreachable.

        ``warm``: the blocks extend a prefix that was just read (the eviction admission hint).
        """
        statuses: list[int | None] = [None] * len(blocks)
        keys = [key for key, _ in blocks]

        async def work(conn: MemberConnection, positions: list[int]) -> None:
            batch = [(blocks[i][0], memoryview(blocks[i][1]).cast("B")) for i in positions]
            if conn.heap is not None:
                answer = await self._write_shm(conn, batch, warm)
            else:
                table = p.encode_put_request([(key, zlib.crc32(data), len(data)) for key, data in batch], warm)
                payload = await conn.call(Op.PUT, [table, *(data for _, data in batch)], self._timeout)
                answer = p.decode_statuses(payload, "put response")
            for i, status in zip(positions, answer):
                statuses[i] = status

        sizes = [len(memoryview(data).cast("B")) for _, data in blocks]
        if sizes:
            self._block_bytes_seen = sum(sizes) // len(sizes)
        await self._each_batch(keys, work, sizes)
        self.stats.stored += sum(s == PutStatus.STORED for s in statuses)
        self.stats.dropped_puts += sum(s is None for s in statuses)
        return statuses

    async def _write_shm(self, conn: MemberConnection, batch: list[tuple[int, memoryview]], warm: bool) -> list[int]:
        heap = conn.heap
        assert heap is not None
        request = p.encode_shm_alloc_request([(key, len(data)) for key, data in batch], warm)
        lease, entries = p.decode_shm_alloc_response(await conn.call(Op.SHM_ALLOC, [request], self._timeout))
        crcs: list[int | None] = []
        for (_, data), entry in zip(batch, entries):
            if entry.status == PutStatus.STORED:
                try:
                    heap.write_from(entry.pages, data)
                except ValueError as err:
                    raise MemberError(f"{conn.name}: {err}") from None
            crcs.append(zlib.crc32(data) if self.config.verify_shm_checksums and entry.pages else None)
        answer = await conn.call(Op.SHM_COMMIT, [p.encode_shm_commit_request(lease, crcs)], self._timeout)
        return p.decode_statuses(answer, "shm_commit response")

    async def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
        await asyncio.sleep(0)  # let transports run their close callbacks


class BlockingKVPoolClient:
    """The pool client for synchronous callers: its event loop runs on a daemon thread."""

    def __init__(self, config: KVClientConfig, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aibrix-kv-client", daemon=True)
        self._thread.start()
        self.client = self._run(self._make(config, kwargs))

    async def _make(self, config: KVClientConfig, kwargs: dict[str, Any]) -> KVPoolClient:
        return KVPoolClient(config, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def exists(self, keys: Sequence[int]) -> list[bool]:
        return self._run(self.client.exists(keys))

    def lookup_prefix(self, keys: Sequence[int]) -> int:
        return self._run(self.client.lookup_prefix(keys))

    def get(self, keys: Sequence[int]) -> list[memoryview | None]:
        return self._run(self.client.get(keys))

    def get_into(self, keys: Sequence[int], buffers: Sequence[memoryview | bytearray]) -> list[bool]:
        return self._run(self.client.get_into(keys, buffers))

    def put(self, blocks: Sequence[tuple[int, Buffer]], *, warm: bool = False) -> list[int | None]:
        return self._run(self.client.put(blocks, warm=warm))

    @property
    def stats(self) -> ClientStats:
        return self.client.stats

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
