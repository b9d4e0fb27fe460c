"""Helpers: start real pool members on 127.0.0.1:0 inside a test's own event loop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aibrix_spec.components.kv import KVClientConfig, KVServerConfig
from runtime_components.kv.server import KVServer


def server_config(**overrides: Any) -> KVServerConfig:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "metricsPort": 0, "capacity": "4Mi", "pageSize": "4Ki",
                            "shm": {"enabled": False}, "drainSeconds": 2}
    base.update(overrides)
    return KVServerConfig.model_validate(base)


def client_config(servers: list[KVServer], **overrides: Any) -> KVClientConfig:
    base: dict[str, Any] = {"members": {"source": "static", "static": [f"127.0.0.1:{s.port}" for s in servers]},
                            "timeoutMs": 2000, "connectTimeoutMs": 1000, "deadMemberBackoffSeconds": 30}
    base.update(overrides)
    return KVClientConfig.model_validate(base)


@contextlib.asynccontextmanager
async def running_servers(n: int = 1, *, node_id: str = "node-a", **overrides: Any) -> AsyncIterator[list[KVServer]]:
    servers = [KVServer(server_config(**overrides), node_id=node_id) for _ in range(n)]
    try:
        for server in servers:
            await server.start()
        yield servers
    finally:
        for server in servers:
            await server.stop(drain_seconds=0.5)


class ThreadedServer:
    """A pool member on its own event-loop thread, for tests of synchronous callers."""

    def __init__(self, *, node_id: str | None = "node-a", **overrides: Any) -> None:
        """``node_id=None``: this machine's real identity (other processes here share it)."""
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = KVServer(server_config(**overrides), node_id=node_id)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=10)

    @property
    def member(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.server.stop(drain_seconds=0.5), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
