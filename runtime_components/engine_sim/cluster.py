"""Many simulated engines in one process: one asyncio event loop, one port per engine.

Where it sits: ``aibrix-engine-sim`` (``cli.py``) and tests start an ``EngineCluster``;
gateways, scalers and load clients then talk to each engine's port as they would to a vLLM
pod. ``endpoints()`` describes every engine as a JSON-able dict (``index``, ``url``,
``host``, ``port``, ``model``, ``accelerator``, ``engine``: the metric dialect, and
``pd_role`` for a prefill or decode engine) — the CLI prints one per line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .config import EngineConfig, ExternalKVStore
from .faults import Faults
from .kv_publisher import KVEventsSettings
from .pd import DEFAULT_LINK_GBS, PdRole
from .server import EngineServer

__all__ = ["EngineCluster"]


class EngineCluster:
    """``len(configs)`` engines; ``await start()`` binds them, ``await stop()`` releases them."""

    def __init__(
        self,
        configs: Sequence[EngineConfig],
        *,
        speedup: float = 1.0,
        faults: Mapping[int, Faults] | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        external_kv_store: ExternalKVStore | None = None,
        metrics_dialect: str = "vllm",
        kv_events: KVEventsSettings | None = None,
        pd_role: PdRole = "both",
        pd_link_gbs: float = DEFAULT_LINK_GBS,
    ) -> None:
        if not configs:
            raise ValueError("an engine cluster needs at least one engine")
        bad = sorted(i for i in (faults or {}) if not 0 <= i < len(configs))
        if bad:
            raise ValueError(f"faults name engine index(es) {bad}, but engines are numbered 0..{len(configs) - 1}")
        self.configs = list(configs)
        self.speedup = speedup
        self.seed = seed
        self.host = host
        self._faults = dict(faults or {})
        self._store = external_kv_store
        self.metrics_dialect = metrics_dialect
        self.kv_events = kv_events
        self.pd_role: PdRole = pd_role
        self.pd_link_gbs = pd_link_gbs
        self.servers: list[EngineServer] = []

    def _server(self, index: int) -> EngineServer:
        return EngineServer(
            self.configs[index], index=index, speedup=self.speedup, faults=self._faults.get(index),
            seed=self.seed, external_kv_store=self._store, metrics_dialect=self.metrics_dialect,
            kv_events=self.kv_events, pd_role=self.pd_role, pd_link_gbs=self.pd_link_gbs,
        )  # fmt: skip

    async def start(self, base_port: int = 0) -> list[dict[str, Any]]:
        """Start every engine on ``base_port + i`` (or ephemeral ports when ``base_port`` is 0)."""
        try:
            for i in range(len(self.configs)):
                server = self._server(i)
                self.servers.append(server)
                await server.start(self.host, base_port + i if base_port else 0)
        except BaseException:
            await self.stop()
            raise
        return self.endpoints()

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()

    async def restart(self, index: int) -> dict[str, Any]:
        """Replace engine ``index`` by a fresh one (empty caches, no faults) on the same port."""
        old = self.servers[index]
        port = old.port
        await old.stop()
        self._faults.pop(index, None)
        fresh = self._server(index)
        await fresh.start(self.host, port)
        self.servers[index] = fresh
        return self.endpoints()[index]

    def endpoints(self) -> list[dict[str, Any]]:
        return [
            {
                "index": s.index,
                "url": f"http://{self.host}:{s.port}",
                "host": self.host,
                "port": s.port,
                "model": s.config.served_model_name,
                "accelerator": s.config.accelerator,
                "engine": s.metrics_dialect,
                **({"kv_events_port": s.kv_publisher.port} if s.kv_publisher is not None else {}),
                **({"pd_role": s.pd_role} if s.pd_role != "both" else {}),
            }
            for s in self.servers
        ]
