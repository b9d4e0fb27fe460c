"""``RoutingSync``: the outbox flusher and the reader that applies other processes' batches.

Cost on the request path: appending one event to a list (the prefix index's ``add`` after a
routing decision). A flush is scheduled when the outbox becomes non-empty and runs
``flush_interval_s`` later, so a busy process sends one batch per interval, an idle one none.
The reader applies batches between requests on the same event loop (no locks).

Failure: a send that fails drops that batch (counted) and marks the sync disconnected; the
reader reconnects with a backoff and replays the newest batches when the transport keeps
history (Redis). Routing never waits for any of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from ..policy.state import RoutingState
from .codec import BadBatch, decode_batch, encode_batch
from .shared import Outbox, SharedPrefixIndex, SharedSessionTable
from .transports import Transport

__all__ = ["RoutingSync", "SyncStats", "default_origin"]

log = logging.getLogger(__name__)


def default_origin() -> str:
    """host:pid:random: unique per process, readable in logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


@dataclass
class SyncStats:
    connected: bool = False
    batches_sent: int = 0
    events_sent: int = 0
    bytes_sent: int = 0
    events_dropped: int = 0
    batches_received: int = 0
    events_applied: int = 0
    events_unknown_key: int = 0
    bad_batches: int = 0


class RoutingSync:
    """Shares one process's ``RoutingState`` with the other gateway processes on ``transport``."""

    def __init__(self, transport: Transport, *, origin: str | None = None, flush_interval_s: float = 0.005,
                 max_blocks: int = 256, warm_start_batches: int = 500, retry_s: float = 1.0) -> None:
        self.transport = transport
        self.origin = origin or default_origin()
        self.flush_interval_s = flush_interval_s
        self.warm_start_batches = warm_start_batches
        self.retry_s = retry_s
        self.stats = SyncStats()
        self.outbox = Outbox()
        self._objects: dict[str, SharedPrefixIndex | SharedSessionTable] = {}
        self.state = RoutingState(prefix_index=self._new_index, session_table=self._new_table)
        self._max_blocks = max_blocks
        self._kick = asyncio.Event()

    def _new_index(self, key: str, bound: int) -> SharedPrefixIndex:
        index = SharedPrefixIndex(f"p|{key}", bound, self.outbox, self._max_blocks)
        self._objects[index.key] = index
        return index

    def _new_table(self, key: str, bound: int) -> SharedSessionTable:
        table = SharedSessionTable(f"s|{key}", bound, self.outbox)
        self._objects[table.key] = table
        return table

    # -- inbound --------------------------------------------------------------------------
    def apply_payload(self, payload: bytes) -> int:
        """Apply another process's batch; returns the events applied (0 for our own batch)."""
        try:
            origin, events = decode_batch(payload)
        except BadBatch as exc:
            self.stats.bad_batches += 1
            log.warning("routing sync: %s", exc)
            return 0
        if origin == self.origin:
            return 0
        self.stats.batches_received += 1
        applied = 0
        for event in events:
            target = self._objects.get(event[1])
            if target is None:  # another process routes a model or policy this one does not build
                self.stats.events_unknown_key += 1
                continue
            target.apply(event)
            applied += 1
        self.stats.events_applied += applied
        return applied

    # -- outbound -------------------------------------------------------------------------
    def take_batch(self) -> bytes | None:
        """The outbox as one encoded batch (None when empty)."""
        events = self.outbox.drain()
        return encode_batch(self.origin, events) if events else None

    async def _send(self, events: list[list[Any]]) -> None:
        payload = encode_batch(self.origin, events)
        try:
            await self.transport.send(payload)
        except Exception as exc:  # a down store must not stop routing: count and go on
            self.stats.events_dropped += len(events)
            if self.stats.connected:
                log.warning("routing sync: %s unreachable, routing on local state (%s: %s)",
                            self.transport.name, exc.__class__.__name__, exc)
            self.stats.connected = False
            return
        self.stats.batches_sent += 1
        self.stats.events_sent += len(events)
        self.stats.bytes_sent += len(payload)

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        self.outbox.on_first = self._kick.set
        while not stop.is_set():
            await self._kick.wait()
            self._kick.clear()
            await asyncio.sleep(self.flush_interval_s)  # let a burst gather into one batch
            events = self.outbox.drain()
            if events:
                await self._send(events)
        self.outbox.on_first = None

    async def _read_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if not self.stats.connected:
                    await self.transport.connect()
                    for payload in await self.transport.recent(self.warm_start_batches):
                        self.apply_payload(payload)
                    self.stats.connected = True
                    log.info("routing sync: connected to %s", self.transport.name)
                for payload in await self.transport.receive():
                    self.apply_payload(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stats.connected:
                    log.warning("routing sync: lost %s (%s: %s); routing on local state",
                                self.transport.name, exc.__class__.__name__, exc)
                self.stats.connected = False
                try:
                    await asyncio.wait_for(stop.wait(), self.retry_s)
                except TimeoutError:
                    pass

    async def run(self, stop: asyncio.Event) -> None:
        """Flush and read until ``stop`` is set."""
        tasks = [asyncio.create_task(self._flush_loop(stop)), asyncio.create_task(self._read_loop(stop))]
        try:
            await stop.wait()
        finally:
            self._kick.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            events = self.outbox.drain()
            if events and self.stats.connected:
                await self._send(events)
            await self.transport.close()

