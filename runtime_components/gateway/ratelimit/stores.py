"""Where sliding-window counters live: process memory (one replica) or Redis (shared).

Both stores implement :meth:`WindowStore.apply_all`: a list of operations applied in order,
stopping at the first one refused (a request checks its token budget, then counts itself
against its request budget: one Redis round trip for both). Each operation has three modes:

- ``admit``: increment by ``cost`` only if ``estimate + cost <= limit`` (requests),
- ``check``: answer whether ``estimate + cost <= limit`` without counting (token budget
  before a request: tokens are only known after the response),
- ``add``: increment unconditionally (tokens counted from a response's usage).

In Redis the check and the increment run in one Lua script, so concurrent replicas never
both take the last slot. Keys carry the user as hash tag (``{user}:metric``) so every key one
script touches (both metrics, both windows) lands on the same Redis Cluster slot; each key
expires after two windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, Protocol

from .window import WindowCounts, estimate, window_index

__all__ = ["Mode", "WindowStore", "MemoryWindowStore", "RedisWindowStore"]

Mode = Literal["admit", "check", "add"]


#: one operation: (key, mode, cost, limit)
Operation = tuple[str, Mode, int, int]


class WindowStore(Protocol):
    """Counters keyed by name; each result is (allowed, counts as seen before any increment)."""

    async def apply_all(self, ops: list[Operation]) -> list[tuple[bool, WindowCounts]]:
        """Apply ``ops`` in order, stopping after the first refused one (its result is last)."""
        ...

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

    async def apply_all(self, ops: list[Operation]) -> list[tuple[bool, WindowCounts]]:
        out = []
        for op in ops:
            out.append(await self.apply(*op))
            if not out[-1][0]:
                break
        return out

    async def close(self) -> None:
        self._counters.clear()


# Operation i uses KEYS[2i-1] (current window), KEYS[2i] (previous) and ARGV[2+4(i-1) ..] =
# cost, limit, mode; ARGV[1] = fraction, ARGV[2] = ttl. Returns allowed, prev, curr per operation
# applied, stopping after the first refusal.
_SCRIPT = """
local fraction = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS / 2 do
  local curr = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local base = 2 + 3 * (i - 1)
  local cost = tonumber(ARGV[base + 1])
  local limit = tonumber(ARGV[base + 2])
  local mode = ARGV[base + 3]
  local allowed = 1
  if mode ~= 'add' and prev * (1 - fraction) + curr + cost > limit then allowed = 0 end
  if allowed == 1 and mode ~= 'check' then
    redis.call('INCRBY', KEYS[2 * i - 1], cost)
    redis.call('PEXPIRE', KEYS[2 * i - 1], ttl_ms)
  end
  table.insert(out, allowed)
  table.insert(out, tostring(prev))
  table.insert(out, tostring(curr))
  if allowed == 0 then break end
end
return out
"""


def _tagged(key: str) -> str:
    """``user:metric`` -> ``{user}:metric``: the hash tag is the user, so one script touching a
    user's rpm and tpm keys (both windows) stays on one Redis Cluster slot."""
    user, _, metric = key.rpartition(":")
    return f"{{{user}}}:{metric}" if user else f"{{{key}}}"


class RedisWindowStore:
    """Counters in Redis, shared by every gateway replica that uses the same URL."""

    def __init__(self, url: str, window_s: float, clock: Callable[[], float] = time.time, prefix: str = "aibrix:rl",
                 password: str | None = None, timeout_s: float = 1.0) -> None:
        import redis.asyncio as redis_asyncio  # the gateway extra; only needed with a redisUrl

        extra = {"password": password} if password else {}
        self._client = redis_asyncio.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                                    **extra)
        self._script = self._client.register_script(_SCRIPT)
        self._window_s = window_s
        self._clock = clock
        self._prefix = prefix

    async def apply(self, key: str, mode: Mode, cost: int, limit: int) -> tuple[bool, WindowCounts]:
        return (await self.apply_all([(key, mode, cost, limit)]))[0]

    async def apply_all(self, ops: list[Operation]) -> list[tuple[bool, WindowCounts]]:
        index, fraction = window_index(self._clock(), self._window_s)
        keys: list[str] = []
        args: list[str | int] = [repr(fraction), int(self._window_s * 2000) + 1000]
        for key, mode, cost, limit in ops:
            name = _tagged(key)
            keys += [f"{self._prefix}:{name}:{index}", f"{self._prefix}:{name}:{index - 1}"]
            args += [cost, limit, mode]
        flat = await self._script(keys=keys, args=args)
        return [(bool(int(flat[i])), WindowCounts(float(flat[i + 1]), float(flat[i + 2]), fraction))
                for i in range(0, len(flat), 3)]

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
