"""Sliding-window-counter arithmetic and the in-memory store, with a fake clock."""

import asyncio

import pytest

from runtime_components.gateway.ratelimit import MemoryWindowStore, WindowCounts, estimate, retry_after_s


@pytest.mark.parametrize("prev,curr,fraction,expected", [
    (0, 0, 0.0, 0.0), (10, 0, 0.0, 10.0), (10, 0, 0.5, 5.0), (10, 4, 0.75, 6.5), (0, 7, 0.9, 7.0),
])
def test_estimate(prev, curr, fraction, expected):
    assert estimate(WindowCounts(prev, curr, fraction)) == pytest.approx(expected)


@pytest.mark.parametrize("prev,curr,fraction,cost,limit,expected", [
    (0, 5, 0.5, 1, 10, 0.0),          # room now
    (0, 10, 0.5, 1, 10, 36.0),        # wait for the next window, then curr must decay to 9/10
    (10, 0, 0.0, 1, 10, 6.0),         # prev decays inside this window: 10 * (1 - f) <= 9 at f = 0.1
    (10, 5, 0.0, 1, 10, 36.0),        # 10(1-f)+5 <= 9 at f = 0.6
    (20, 10, 0.5, 1, 10, 36.0),       # prev never frees enough this window: next window, curr 10 -> 9
])
def test_retry_after(prev, curr, fraction, cost, limit, expected):
    counts = WindowCounts(prev, curr, fraction)
    wait = retry_after_s(counts, cost, limit, 60.0)
    assert wait == pytest.approx(expected)
    if wait:  # at the answer the limit holds (replaying the decay), and just before it does not
        assert _estimate_after(counts, wait, 60.0) + cost <= limit + 1e-9
        assert _estimate_after(counts, wait - 0.5, 60.0) + cost > limit


def _estimate_after(c: WindowCounts, seconds: float, window: float) -> float:
    f = c.fraction + seconds / window
    if f < 1:
        return estimate(WindowCounts(c.prev, c.curr, f))
    return estimate(WindowCounts(c.curr, 0, f - 1)) if f < 2 else 0.0


def test_retry_after_rejects_impossible_cost():
    with pytest.raises(ValueError, match="a cost of 11 can never fit a limit of 10"):
        retry_after_s(WindowCounts(0, 0, 0), 11, 10, 60)


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_memory_store_admits_up_to_limit_then_slides():
    clock = FakeClock(1000 * 60.0)
    store = MemoryWindowStore(60.0, clock)

    async def run():
        results = [(await store.apply("u:rpm", "admit", 1, 3))[0] for _ in range(4)]
        clock.now += 60.0 * 1.5  # half way into the next window: prev (3) counts half
        half = (await store.apply("u:rpm", "admit", 1, 3))[0], (await store.apply("u:rpm", "admit", 1, 3))[0]
        clock.now += 60.0 * 3  # long idle: everything forgotten
        fresh = (await store.apply("u:rpm", "admit", 1, 3))[0]
        return results, half, fresh

    results, half, fresh = asyncio.run(run())
    assert results == [True, True, True, False]
    assert half == (True, False)  # 1.5 + 1 <= 3, then 1.5 + 1 + 1 > 3
    assert fresh is True


def test_memory_store_check_does_not_count_and_add_always_counts():
    store = MemoryWindowStore(60.0, FakeClock(0.0))

    async def run():
        checks = [(await store.apply("t", "check", 1, 5))[0] for _ in range(10)]
        await store.apply("t", "add", 50, 5)
        after = await store.apply("t", "check", 1, 5)
        return checks, after

    checks, (allowed, counts) = asyncio.run(run())
    assert all(checks)
    assert not allowed and counts.curr == 50
