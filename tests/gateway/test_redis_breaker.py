"""A hung Redis costs a few short timeouts, then nothing, and limits come back when it does
(issue 22, item 11): the circuit breaker with a scripted store, a real TCP listener that
accepts and never answers, and one round trip per request against a real redis-server."""

from __future__ import annotations

import asyncio
import shutil
import socket

import pytest

from aibrix_spec.components.gateway import TierSpec
from runtime_components.gateway.errors import GatewayError
from runtime_components.gateway.ratelimit import MemoryWindowStore, RateLimiter, RedisWindowStore
from runtime_components.gateway.ratelimit.breaker import BreakerStore, StoreUnavailable
from runtime_components.gateway.users import User

from .harness import RedisProcess


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedStore:
    """Answers from a memory store, or hangs / raises while ``mode`` says so; counts calls."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | hang | error
        self.calls = 0
        self._memory = MemoryWindowStore(60.0, clock=lambda: 0.0)

    async def apply_all(self, ops):
        self.calls += 1
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "error":
            raise ConnectionError("refused")
        return await self._memory.apply_all(ops)

    async def close(self) -> None:
        pass


OP = [("u:rpm", "admit", 1, 1000)]


def test_breaker_opens_fails_fast_probes_once_and_closes():
    async def run():
        clock = Clock()
        store = ScriptedStore()
        breaker = BreakerStore(store, timeout_s=0.01, failures=3, cooldown_s=5.0, clock=clock)
        store.mode = "hang"
        for _ in range(3):  # closed: each call waits out the deadline
            with pytest.raises(StoreUnavailable, match="did not answer within 10 ms"):
                await breaker.apply_all(OP)
        assert (breaker.state, store.calls) == ("open", 3)
        for _ in range(100):  # open: nothing reaches the store
            with pytest.raises(StoreUnavailable, match="circuit is open"):
                await breaker.apply_all(OP)
        assert store.calls == 3
        clock.now += 5.0  # half-open: one probe, still hung -> open again
        with pytest.raises(StoreUnavailable, match="did not answer"):
            await breaker.apply_all(OP)
        assert (breaker.state, store.calls) == ("open", 4)
        clock.now += 5.0
        store.mode = "ok"  # the probe succeeds -> closed
        probe, other = await asyncio.gather(breaker.apply_all(OP), _fails_fast(breaker))
        assert probe[0][0] and other == "circuit is open"  # only the probe went through
        assert (breaker.state, store.calls, breaker.state_changes) == ("closed", 5, ["open", "closed"])
        await breaker.apply_all(OP)
        assert store.calls == 6

    asyncio.run(run())


async def _fails_fast(breaker: BreakerStore) -> str:
    try:
        await breaker.apply_all(OP)
    except StoreUnavailable as exc:
        return str(exc).removeprefix("rate-limit store ")
    return "went through"


def test_errors_below_the_threshold_do_not_open_the_circuit():
    async def run():
        store = ScriptedStore()
        breaker = BreakerStore(store, timeout_s=1.0, failures=3, cooldown_s=5.0, clock=Clock())
        for mode in ("error", "error", "ok", "error", "error", "ok"):
            store.mode = mode
            try:
                await breaker.apply_all(OP)
            except StoreUnavailable:
                pass
        return breaker.state, store.calls

    assert asyncio.run(run()) == ("closed", 6)


def test_hung_redis_listener_costs_only_the_first_requests():
    # A listener that accepts connections (the kernel completes the handshake) and never
    # answers: what a SIGSTOPped or wedged Redis looks like to a client.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    port = hung.getsockname()[1]

    async def run():
        redis = RedisWindowStore(f"redis://127.0.0.1:{port}/0", 60.0, timeout_s=0.05)
        counted = _Counting(redis)
        breaker = BreakerStore(counted, timeout_s=0.05, failures=3, cooldown_s=60.0)
        limiter = RateLimiter({"t": TierSpec(rpm=10, tpm=1000)}, breaker, 60.0)
        outcomes = []
        for _ in range(50):
            try:
                await limiter.admit(User("dave", "t"))
                outcomes.append("admitted")
            except StoreUnavailable:
                outcomes.append("unavailable")
        await redis.close()
        return outcomes, counted.calls

    try:
        outcomes, calls = asyncio.run(run())
    finally:
        hung.close()
    assert outcomes == ["unavailable"] * 50 and calls == 3  # 47 requests never waited on Redis


class _Counting:
    def __init__(self, store) -> None:
        self.store = store
        self.calls = 0

    async def apply_all(self, ops):
        self.calls += 1
        return await self.store.apply_all(ops)

    async def close(self) -> None:
        await self.store.close()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (scripts/test installs it)")
def test_one_redis_round_trip_per_request(tmp_path):
    server = RedisProcess(tmp_path)

    def stat(name: str) -> int:
        import redis  # the gateway extra

        with redis.Redis(host="127.0.0.1", port=server.port) as client:
            return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))

    async def run():
        limiter = RateLimiter({"t": TierSpec(rpm=5, tpm=1000)}, RedisWindowStore(server.url, 60.0), 60.0)
        await limiter.admit(User("erin", "t"))  # loads the script (EVALSHA, SCRIPT LOAD, EVALSHA)
        before = stat("evalsha")
        refused = 0
        for _ in range(10):
            try:
                await limiter.admit(User("erin", "t"))
            except GatewayError:
                refused += 1
        await limiter.close()
        return stat("evalsha") - before, refused

    try:
        calls, refused = asyncio.run(run())
    finally:
        server.stop()
    assert (calls, refused) == (10, 6)  # one script call per request, refused ones included
