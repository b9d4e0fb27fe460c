"""Block pool: reference counts, prefix reuse, LRU eviction of free cached blocks."""

from __future__ import annotations

import random

import pytest

from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.core import EngineCore
from runtime_components.engine_sim.kv_blocks import BlockPool


def test_cached_blocks_survive_free_and_are_reused() -> None:
    pool = BlockPool(4)
    a = pool.allocate(2)
    pool.commit(a[0], 100)
    pool.commit(a[1], 200)
    pool.free(a)
    assert pool.num_free == 4 and pool.usage == 0.0
    hit = pool.cached_prefix([100, 200, 300])
    assert hit == a
    pool.touch(hit)
    assert pool.num_free == 2


def test_eviction_takes_the_least_recently_freed_tail_first() -> None:
    pool = BlockPool(3)
    blocks = pool.allocate(3)
    for b, h in zip(blocks, (1, 2, 3)):
        pool.commit(b, h)
    pool.free(blocks)  # freed in reverse: the prompt's tail (hash 3) is evicted first
    pool.allocate(1)
    assert pool.cached_prefix([1, 2, 3]) == blocks[:2]
    pool.allocate(1)
    assert pool.cached_prefix([1, 2, 3]) == blocks[:1]
    assert pool.evictions == 2


@pytest.mark.parametrize(
    ("enable", "expected"),
    [(True, 1), (False, 0)],
)
def test_prefix_caching_switch(enable: bool, expected: int) -> None:
    pool = BlockPool(2, enable_prefix_caching=enable)
    (b,) = pool.allocate(1)
    pool.commit(b, 7)
    pool.free([b])
    assert len(pool.cached_prefix([7])) == expected


def test_misuse_is_reported() -> None:
    pool = BlockPool(1)
    with pytest.raises(RuntimeError, match=r"allocate\(2\) with only 1 free blocks"):
        pool.allocate(2)
    (b,) = pool.allocate(1)
    pool.free([b])
    with pytest.raises(RuntimeError, match="freed more often than referenced"):
        pool.free([b])
    with pytest.raises(ValueError, match="num_blocks must be >= 1"):
        BlockPool(0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_blocks_are_all_free_after_a_random_workload_drains(seed: int) -> None:
    """Preemption, sharing and eviction under pressure leak no block and lose no request."""
    rng = random.Random(seed)
    core = EngineCore(EngineConfig(num_gpu_blocks=64, max_num_batched_tokens=256))
    prefixes = [[rng.randrange(32000) for _ in range(rng.randint(16, 200))] for _ in range(4)]
    finished: set[str] = set()
    now = 0.0
    ids = [f"r{i}" for i in range(40)]
    for rid in ids:
        prompt = rng.choice(prefixes) + [rng.randrange(32000) for _ in range(rng.randint(1, 100))]
        core.add_request(SimRequest(rid, prompt, rng.randint(1, 150), now))
        for _ in range(rng.randint(0, 5)):
            if core.has_work():
                result = core.step(now)
                now = result.end_s
                finished.update(e.request_id for e in result.events if e.finished)
    for _ in range(100_000):
        if not core.has_work():
            break
        result = core.step(now)
        now = result.end_s
        finished.update(e.request_id for e in result.events if e.finished)
    assert finished == set(ids)
    assert core.pool.num_free == 64 and core.kv_cache_usage == 0.0
    assert core.stats().num_preemptions > 0
