"""Where sliding-window counters live: process memory (one replica) or Redis (shared).

Both stores implement one operation, :meth:`WindowStore.apply`, with three modes:

- ``admit``: increment by ``cost`` only if ``estimate + cost <= limit`` (requests),
- ``check``: answer whether ``estimate + cost <= limit`` without counting (token budget
  before a request: tokens are only known after the response),
- ``add``: increment unconditionally (tokens counted from a response's usage).

In Redis the check and the increment run in one Lua script, so concurrent replicas never
both take the last slot. Keys carry a hash tag (``{user:metric}``) so the current and the
previous window's keys land on the same Redis Cluster slot; each expires after two windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, Protocol

from .window import WindowCounts, estimate, window_index

__all__ = ["Mode", "WindowStore", "MemoryWindowStore", "RedisWindowStore"]

Mode = Literal["admit", "check", "add"]


class WindowStore(Protocol):
    """Counters keyed by name; returns (allowed, counts as seen before any increment)."""

    async def apply(self, key: str, mode: Mode, cost: int, limit: int) -> tuple[bool, WindowCounts]: ...

    async def close(self) -> None: ...


class MemoryWindowStore:
    """Counters in a dict; correct for one gateway replica (asyncio: no locking needed)."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.time) -> None:
        self._window_s = window_s
        self._clock = clock
        self._counters: dict[str, tuple[int, int, int]] = {}  # key -> (index, prev, curr)

    async def apply(self, key: str, mode: Mode, cost: int, limit: int) -> tuple[bool, WindowCounts]:
        index, fraction = window_index(self._clock(), self._window_s)
        old_index, prev, curr = self._counters.get(key, (index, 0, 0))
        if old_index == index - 1:
            prev, curr = curr, 0
        elif old_index != index:
            prev, curr = 0, 0
        counts = WindowCounts(prev, curr, fraction)
        allowed = mode == "add" or estimate(counts) + cost <= limit
        if allowed and mode != "check":
            curr += cost
        self._counters[key] = (index, prev, curr)
        if len(self._counters) > 100_000:  # drop keys idle for two windows so memory stays bounded
            self._counters = {k: v for k, v in self._counters.items() if v[0] >= index - 1}
        return allowed, counts

    async def close(self) -> None:
        self._counters.clear()


_SCRIPT = """
local curr = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local fraction = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local mode = ARGV[4]
local ttl_ms = tonumber(ARGV[5])
local allowed = 1
if mode ~= 'add' and prev * (1 - fraction) + curr + cost > limit then allowed = 0 end
if allowed == 1 and mode ~= 'check' then
  redis.call('INCRBY', KEYS[1], cost)
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end
return {allowed, tostring(prev), tostring(curr)}
"""


class RedisWindowStore:
    """Counters in Redis, shared by every gateway replica that uses the same URL."""

    def __init__(self, url: str, window_s: float, clock: Callable[[], float] = time.time, prefix: str = "aibrix:rl",
                 password: str | None = None) -> None:
        import redis.asyncio as redis_asyncio  # the gateway extra; only needed with a redisUrl

        extra = {"password": password} if password else {}
        self._client = redis_asyncio.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, **extra)
        self._script = self._client.register_script(_SCRIPT)
        self._window_s = window_s
        self._clock = clock
        self._prefix = prefix

    async def apply(self, key: str, mode: Mode, cost: int, limit: int) -> tuple[bool, WindowCounts]:
        index, fraction = window_index(self._clock(), self._window_s)
        keys = [f"{self._prefix}:{{{key}}}:{index}", f"{self._prefix}:{{{key}}}:{index - 1}"]
        ttl_ms = int(self._window_s * 2000) + 1000
        allowed, prev, curr = await self._script(keys=keys, args=[repr(fraction), cost, limit, mode, ttl_ms])
        return bool(int(allowed)), WindowCounts(float(prev), float(curr), fraction)

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
