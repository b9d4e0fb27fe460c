"""Rate-limit counters shared through a real redis-server by two limiters ("replicas")."""

import asyncio
import shutil

import pytest

from aibrix_spec.components.gateway import TierSpec
from runtime_components.gateway.errors import GatewayError
from runtime_components.gateway.ratelimit import RateLimiter, RedisWindowStore
from runtime_components.gateway.users import User

from .harness import RedisProcess

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (scripts/test installs it)")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_two_replicas_share_rpm_and_tpm(redis_server):
    clock = Clock(120_000.0)  # the start of a window
    tiers = {"small": TierSpec(rpm=5, tpm=100)}
    user = User("carol", "small")

    async def run():
        stores = [RedisWindowStore(redis_server.url, 60.0, clock, prefix="t1"), RedisWindowStore(redis_server.url, 60.0, clock, prefix="t1")]
        a, b = (RateLimiter(tiers, s, 60.0) for s in stores)
        outcomes = []
        for i in range(7):  # alternate replicas: together they may admit 5
            try:
                await (a if i % 2 == 0 else b).admit(user)
                outcomes.append("ok")
            except GatewayError as exc:
                outcomes.append(exc.headers["retry-after"])
        clock.now += 60.0  # next window: the previous 5 still weigh 5 * (1 - 0) -> still full
        try:
            await a.admit(user)
            full = False
        except GatewayError:
            full = True
        clock.now += 59.0  # 59/60 through the next window: 5/60 of them remain
        await b.admit(user)
        await a.record_tokens(user, 150)  # tokens counted by one replica block the other
        try:
            await b.admit(user)
            tpm = None
        except GatewayError as exc:
            tpm = exc.message
        for limiter in (a, b):
            await limiter.close()
        return outcomes, full, tpm

    outcomes, full, tpm = asyncio.run(run())
    assert outcomes[:5] == ["ok"] * 5
    assert outcomes[5:] == ["72", "72"]  # 60 s to the next window + 12 s until 5 * (1 - g) <= 4
    assert full
    assert tpm is not None and "used the 100 tokens per minute" in tpm


def test_unreachable_redis_fails_at_ping():
    async def run():
        store = RedisWindowStore("redis://127.0.0.1:9/0", 60.0)
        try:
            await store.ping()
        finally:
            await store.close()

    with pytest.raises(Exception) as info:
        asyncio.run(run())
    assert "Connect" in type(info.value).__name__ or "connect" in str(info.value).lower()
