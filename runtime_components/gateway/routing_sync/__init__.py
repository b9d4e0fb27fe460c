"""Routing state shared by every gateway process: the prefix indexes and session tables.

Where it sits: ``RoutingSync.state`` is the ``RoutingState`` the gateway builds its routers
from; its prefix indexes and session tables record every local change in an outbox, which
is flushed as one batch per ``flush_interval_s`` to a transport (a Redis stream shared by
every replica, or the pod-local hub shared by the workers of one pod); batches from other
processes are applied to the same objects without being published again. Routing reads
only local memory, so a request never waits for the store, and a process that cannot reach
the store keeps routing on what it knows (``aibrix_gateway_routing_sync_connected`` 0).
See docs/routing.md ("Several gateway processes").
"""

from .codec import decode_batch, encode_batch
from .shared import Outbox, SharedPrefixIndex, SharedSessionTable
from .sync import RoutingSync, SyncStats
from .transports import HUB_SOCKET_ENV, HubTransport, MemoryTransport, RedisStreamTransport, Transport, serve_hub

__all__ = [
    "HUB_SOCKET_ENV",
    "HubTransport",
    "MemoryTransport",
    "Outbox",
    "RedisStreamTransport",
    "RoutingSync",
    "SharedPrefixIndex",
    "SharedSessionTable",
    "SyncStats",
    "Transport",
    "decode_batch",
    "encode_batch",
    "serve_hub",
]
