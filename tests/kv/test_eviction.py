"""Eviction plugins against hand-worked reference traces, a naive LRU model, and a scan."""

from __future__ import annotations

import random

import pytest

from runtime_components.kv.cache import SizedCache
from runtime_components.kv.eviction import EVICTION_POLICIES, AdaptivePolicy, S3FifoPolicy, make_policy


def run_trace(cache: SizedCache, trace: list[int], size: int = 1) -> list[int]:
    """Read each key; on a miss insert it. Returns the 1-based positions that hit."""
    hits = []
    for position, key in enumerate(trace, start=1):
        if cache.lookup(key):
            hits.append(position)
        else:
            cache.insert(key, size)
    return hits


# Worked by hand in the comments of each row; capacity in units of size-1 blocks.
REFERENCE_TRACES = [
    # LRU: the hit on A (4) saves A until B and E push it out.
    ("lru", 3, [1, 2, 3, 1, 4, 2, 5, 1], [4], {2, 5, 1}),
    # FIFO: hits do not reorder, so A leaves first at D.
    ("fifo", 3, [1, 2, 3, 1, 4, 2, 5, 1], [4, 6], {4, 5, 1}),
    # S3-FIFO (small share 1 of 4): 1 is promoted to M; 2 and 3 pass through the ghost and
    # return straight into M; 4 and 5 (read once) leave from S.
    ("s3fifo", 4, [1, 1, 2, 3, 4, 5, 1, 2, 6, 3, 1], [2, 7, 11], {1, 2, 3, 6}),
    ("lru", 4, [1, 1, 2, 3, 4, 5, 1, 2, 6, 3, 1], [2, 11], {1, 2, 6, 3}),
]


@pytest.mark.parametrize(("policy", "capacity", "trace", "want_hits", "want_resident"), REFERENCE_TRACES)
def test_reference_trace(policy, capacity, trace, want_hits, want_resident):
    cache = SizedCache(capacity, policy, small_fraction=0.25)
    assert run_trace(cache, trace) == want_hits
    assert {k for k in set(trace) if cache.contains(k)} == want_resident
    assert cache.used_bytes == len(want_resident)


def test_s3fifo_queues_after_reference_trace():
    policy = S3FifoPolicy(4, small_fraction=0.25)
    run_trace(SizedCache(4, policy), [1, 1, 2, 3, 4, 5, 1, 2, 6, 3, 1])
    assert policy.queues() == ([6], [1, 2, 3], [4, 5])


def test_lru_matches_naive_model_on_random_trace():
    rng = random.Random(7)
    trace = [rng.randrange(40) for _ in range(3000)]
    cache = SizedCache(10, "lru")
    model: list[int] = []  # most recent last
    model_hits = []
    for position, key in enumerate(trace, start=1):
        if key in model:
            model_hits.append(position)
            model.remove(key)
        elif len(model) == 10:
            model.pop(0)
        model.append(key)
    assert run_trace(cache, trace) == model_hits


@pytest.mark.parametrize("policy", sorted(EVICTION_POLICIES))
def test_capacity_invariant_with_variable_sizes(policy):
    rng = random.Random(3)
    cache = SizedCache(1000, policy)
    for _ in range(5000):
        key = rng.randrange(300)
        if not cache.lookup(key):
            cache.insert(key, rng.randrange(1, 120))
        assert cache.used_bytes <= 1000
    assert cache.used_bytes == sum(cache.size_of(k) or 0 for k in range(300))
    assert cache.stats.hits + cache.stats.misses == 5000


@pytest.mark.parametrize("policy", sorted(EVICTION_POLICIES))
def test_oversized_block_is_refused_without_evicting(policy):
    cache = SizedCache(10, policy)
    cache.insert(1, 5)
    assert cache.insert(2, 11) is None
    assert cache.contains(1) and cache.stats.rejected == 1


@pytest.mark.parametrize("policy", sorted(EVICTION_POLICIES))
def test_remove_then_fill(policy):
    cache = SizedCache(3, policy)
    for key in (1, 2, 3):
        cache.insert(key, 1)
    assert cache.remove(2) and not cache.remove(2)
    assert cache.insert(4, 1) == []  # the freed unit is reused, nothing evicted
    assert cache.insert(5, 1) != []


@pytest.mark.parametrize(("policy", "want_hot_hits"), [("s3fifo", 20), ("lru", 0), ("fifo", 0)])
def test_scan_resistance(policy, want_hot_hits):
    """A hot set read twice, a long one-pass scan, then the hot set again."""
    hot = list(range(20))
    scan = list(range(1000, 1200))
    cache = SizedCache(40, policy)
    run_trace(cache, hot + hot + scan)
    assert sum(cache.lookup(k) for k in hot) == want_hot_hits


@pytest.mark.parametrize(
    ("name", "capacity", "small", "message"),
    [
        ("arc", 10, 0.1, "unknown eviction policy 'arc'; expected one of: adaptive, s3fifo, lru, fifo"),
        ("s3fifo", 0, 0.1, "s3fifo: capacity must be positive, got 0"),
        ("s3fifo", 10, 1.5, "s3fifo: small_fraction must be in (0, 1), got 1.5"),
    ],
)
def test_bad_policy_arguments(name, capacity, small, message):
    with pytest.raises(ValueError) as err:
        make_policy(name, capacity, small)
    assert str(err.value) == message


@pytest.mark.parametrize("policy", sorted(EVICTION_POLICIES))
def test_victim_on_empty_policy_says_so(policy):
    with pytest.raises(LookupError, match=f"{policy}: nothing to evict"):
        make_policy(policy, 10).victim()


def test_s3fifo_warm_admission_promotes_to_main_instead_of_ghost():
    policy = S3FifoPolicy(4, small_fraction=0.25)
    cache = SizedCache(4, policy)
    cache.insert(1, 1, warm=True)  # extends a prefix just read
    cache.insert(2, 1)
    for key in (3, 4, 5):
        cache.insert(key, 1)
    small, main, ghost = policy.queues()
    assert 1 in main and 1 not in ghost and 2 in ghost


@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_baselines_ignore_the_warm_hint(policy):
    hinted, plain = SizedCache(3, policy), SizedCache(3, policy)
    for key in range(10):
        hinted.insert(key, 1, warm=key % 2 == 0)
        plain.insert(key, 1)
    assert [hinted.contains(k) for k in range(10)] == [plain.contains(k) for k in range(10)]


def recency_trace(n: int, distance: int) -> list[int]:
    """Every key is read once more ``distance`` new keys later: LRU keeps it, S3-FIFO's small
    queue drops it first (pure recency, like the next turn of a chat)."""
    trace = []
    for i in range(n):
        trace.append(i)
        if i >= distance:
            trace.append(i - distance)
    return trace


def scan_trace(rounds: int) -> list[int]:
    """A hot set re-read between one-pass scans longer than the cache."""
    trace = []
    for r in range(rounds):
        trace += list(range(60)) + list(range(10_000 + r * 300, 10_000 + (r + 1) * 300))
    return trace


def hits(policy: str, trace: list[int], capacity: int = 200) -> tuple[int, SizedCache]:
    cache = SizedCache(capacity, policy)
    return len(run_trace(cache, trace)), cache


def test_adaptive_stays_lru_where_lru_wins():
    trace = recency_trace(20_000, distance=60)
    lru, _ = hits("lru", trace)
    s3, _ = hits("s3fifo", trace)
    adaptive, cache = hits("adaptive", trace)
    assert s3 < lru * 0.5  # the case S3-FIFO loses
    assert adaptive == lru and cache.policy.following == "lru" and cache.policy.switches == 0


def test_adaptive_follows_s3fifo_where_scans_flush_lru():
    trace = scan_trace(200)
    lru, _ = hits("lru", trace)
    s3, _ = hits("s3fifo", trace)
    adaptive, cache = hits("adaptive", trace)
    assert s3 > lru * 1.5  # the case LRU loses
    assert cache.policy.following == "s3fifo" and cache.policy.switches == 1
    assert adaptive > lru * 1.4  # it pays for the time it took to notice, but keeps most of the gain


def test_adaptive_keeps_both_orders_over_the_same_keys():
    cache = SizedCache(50, "adaptive")
    run_trace(cache, scan_trace(40) + recency_trace(3000, 20))
    policy = cache.policy
    assert isinstance(policy, AdaptivePolicy)
    resident = {k for k in range(20_000) if cache.contains(k)}
    small, main, _ = policy._s3.queues()
    assert set(policy._lru._queue) == set(small) | set(main) == resident
