"""Where routing-state batches travel: a Redis stream, the pod-local hub, or memory (tests).

Every transport has the same four calls: ``connect``, ``send(payload)``, ``recent(n)`` (the
last ``n`` batches, oldest first, to warm a process that just started) and ``receive()``
(the batches published since the last call, waiting up to about a second; [] when none).

- ``RedisStreamTransport``: ``XADD key MAXLEN ~ N`` per batch, ``XREAD BLOCK`` to follow.
  The stream is bounded (``maxlen`` batches), so Redis memory is too; a replica that starts
  replays the newest ``warm`` batches. Every replica of every pod shares it.
- ``serve_hub`` / ``HubTransport``: a Unix socket served by the gateway pod's supervisor;
  each frame a worker writes goes to every other worker (length-prefixed frames). Used for
  the workers of one pod when no Redis is configured.
- ``MemoryTransport``: an in-process bus for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from typing import Protocol

__all__ = ["HUB_SOCKET_ENV", "HubTransport", "MemoryBus", "MemoryTransport", "RedisStreamTransport", "Transport", "serve_hub"]

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">I")
MAX_FRAME_BYTES = 16 << 20
#: The environment variable naming the pod's hub socket (set by the gateway's supervisor for its workers).
HUB_SOCKET_ENV = "AIBRIX_GATEWAY_HUB_SOCKET"
HUB_CLIENT_BUFFER_BYTES = 8 << 20  # a worker this far behind loses frames rather than stalling the others


class Transport(Protocol):
    name: str

    async def connect(self) -> None: ...

    async def send(self, payload: bytes) -> None: ...

    async def recent(self, count: int) -> list[bytes]: ...

    async def receive(self) -> list[bytes]: ...

    async def close(self) -> None: ...


class RedisStreamTransport:
    """Batches on one Redis stream, shared by every gateway process that uses the same key."""

    name = "redis"

    def __init__(self, url: str, *, key: str = "aibrix:routing-state", maxlen: int = 2000,
                 password: str | None = None, timeout_s: float = 0.5, block_s: float = 1.0) -> None:
        import redis.asyncio as redis_asyncio  # the gateway extra

        extra = {"password": password} if password else {}
        self._writer = redis_asyncio.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                                    **extra)
        # the reader blocks in XREAD for up to block_s: its socket timeout must outlast that
        self._reader = redis_asyncio.Redis.from_url(url, socket_timeout=block_s + timeout_s,
                                                    socket_connect_timeout=timeout_s, **extra)
        self._key = key
        self._maxlen = maxlen
        self._block_ms = int(block_s * 1000)
        self._last = "$"

    async def connect(self) -> None:
        await self._writer.ping()

    async def send(self, payload: bytes) -> None:
        await self._writer.xadd(self._key, {"b": payload}, maxlen=self._maxlen, approximate=True)

    async def recent(self, count: int) -> list[bytes]:
        entries = await self._reader.xrevrange(self._key, count=count) if count > 0 else []
        if entries:
            self._last = entries[0][0]
        elif self._last == "$":
            self._last = "0-0"  # empty stream: read whatever arrives from now on, from its start
        return [fields[b"b"] for _, fields in reversed(entries) if b"b" in fields]

    async def receive(self) -> list[bytes]:
        answer = await self._reader.xread({self._key: self._last}, count=256, block=self._block_ms)
        out: list[bytes] = []
        for _, entries in answer or []:
            for entry_id, fields in entries:
                self._last = entry_id
                if b"b" in fields:
                    out.append(fields[b"b"])
        return out

    async def close(self) -> None:
        await self._writer.aclose()
        await self._reader.aclose()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _FRAME.unpack(await reader.readexactly(_FRAME.size))
    if size > MAX_FRAME_BYTES:
        raise ConnectionError(f"hub frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    return await reader.readexactly(size)


async def serve_hub(path: str, stop: asyncio.Event) -> None:
    """Relay every frame a client writes to every other client, until ``stop`` is set."""
    clients: set[asyncio.StreamWriter] = set()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.add(writer)
        try:
            while True:
                payload = await _read_frame(reader)
                frame = _FRAME.pack(len(payload)) + payload
                for other in list(clients):
                    if other is not writer and other.transport.get_write_buffer_size() < HUB_CLIENT_BUFFER_BYTES:
                        other.write(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            clients.discard(writer)
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(client, path)
    try:
        await stop.wait()
    finally:
        server.close()
        for writer in list(clients):
            writer.close()
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class HubTransport:
    """One worker's connection to its pod's hub."""

    name = "hub"

    def __init__(self, path: str, *, wait_s: float = 1.0) -> None:
        self._path = path
        self._wait_s = wait_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(self._path)

    async def send(self, payload: bytes) -> None:
        if self._writer is None:
            raise ConnectionError("not connected to the hub")
        self._writer.write(_FRAME.pack(len(payload)) + payload)
        await self._writer.drain()

    async def recent(self, count: int) -> list[bytes]:
        return []  # the hub keeps no history: a restarted worker relearns from its siblings' traffic

    async def receive(self) -> list[bytes]:
        if self._reader is None:
            raise ConnectionError("not connected to the hub")
        try:
            first = await asyncio.wait_for(_read_frame(self._reader), self._wait_s)
        except TimeoutError:
            return []
        except asyncio.IncompleteReadError:
            raise ConnectionError("the hub closed the connection") from None
        return [first]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None


class MemoryBus:
    """An in-process bus: what one transport sends, every other transport receives."""

    def __init__(self) -> None:
        self.transports: list[MemoryTransport] = []
        self.up = True

    def transport(self) -> MemoryTransport:
        t = MemoryTransport(self)
        self.transports.append(t)
        return t


class MemoryTransport:
    name = "memory"

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()

    def _check(self) -> None:
        if not self._bus.up:
            raise ConnectionError("the memory bus is down")

    async def connect(self) -> None:
        self._check()

    async def send(self, payload: bytes) -> None:
        self._check()
        for other in self._bus.transports:
            if other is not self:
                other._queue.put_nowait(payload)

    async def recent(self, count: int) -> list[bytes]:
        return []

    async def receive(self) -> list[bytes]:
        self._check()
        try:
            first = await asyncio.wait_for(self._queue.get(), 0.2)
        except TimeoutError:
            return []
        out = [first]
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def close(self) -> None:
        pass
