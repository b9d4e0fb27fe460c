"""The simulated engine's KV-cache events: what its block pool reports, per step, as vLLM does."""

from __future__ import annotations

import random

from runtime_components.common.hashing import block_hashes
from runtime_components.common.kv_event_format import AllBlocksCleared, BlockRemoved, BlockStored, EventBatch
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.core import EngineCore
from runtime_components.engine_sim.des import Simulation
from runtime_components.engine_sim.kv_blocks import BlockPool
from runtime_components.gateway.kv_events import EventTranslator
from runtime_components.gateway.policy.prefix import PrefixIndex


def _run(core: EngineCore, now: float = 0.0) -> float:
    while core.has_work():
        now = core.step(now).end_s
    return now


def test_a_prompts_blocks_are_stored_as_one_chain_with_their_tokens():
    core = EngineCore(EngineConfig(served_model_name="m", num_gpu_blocks=64), record_kv_events=True)
    tokens = list(range(50))
    core.add_request(SimRequest("r", tokens, 1, 0.0))
    _run(core)
    events = core.take_kv_events()
    assert events == [BlockStored(tuple(block_hashes(tokens, 16, "m")), None, tuple(tokens[:48]), 16, None, "GPU")]
    assert core.take_kv_events() == []


def test_eviction_removes_and_a_reset_that_empties_the_cache_clears():
    pool = BlockPool(2, block_size=4, record_events=True)
    a, b = pool.allocate(2)
    pool.commit(a, 11, None, (1, 2, 3, 4))
    pool.commit(b, 12, 11, (5, 6, 7, 8))
    pool.free([a, b])
    assert pool.take_events() == [BlockStored((11, 12), None, (1, 2, 3, 4, 5, 6, 7, 8), 4, None, "GPU")]
    pool.allocate(1)  # the tail block (12) was freed first: it goes first
    assert pool.take_events() == [BlockRemoved((12,), "GPU")]
    pool.reset_prefix_cache()
    assert pool.take_events() == [AllBlocksCleared()]


def test_a_reset_that_keeps_blocks_in_use_reports_only_what_it_removed():
    pool = BlockPool(2, block_size=4, record_events=True)
    a, b = pool.allocate(2)
    pool.commit(a, 11, None, (1, 2, 3, 4))
    pool.commit(b, 21, None, (9, 9, 9, 9))
    pool.free([b])
    pool.take_events()
    pool.reset_prefix_cache()
    assert pool.take_events() == [BlockRemoved((21,), "GPU")]


def test_without_recording_nothing_is_kept():
    pool = BlockPool(2, block_size=4)
    pool.commit(pool.allocate(1)[0], 11, None, (1, 2, 3, 4))
    assert pool.events is None and pool.take_events() == []


def test_the_simulations_hook_feeds_an_index_that_agrees_with_the_engines_cache():
    """The DES hook, through the gateway's translator, keeps an index equal to the engines' caches."""
    rng = random.Random(1)
    prefixes = [[rng.randrange(32000) for _ in range(160)] for _ in range(6)]
    requests = [SimRequest(f"r{i}", prefixes[i % 6] + [rng.randrange(32000) for _ in range(40)], 4, i * 0.05)
                for i in range(120)]
    index = PrefixIndex(100_000)
    translator = EventTranslator(index, "llama-3-8b", 16, 100_000)
    seen: list[float] = []

    def on_events(engine: int, now: float, events) -> None:
        seen.append(now)
        translator.apply(f"10.0.0.{engine}:8000", EventBatch(now, tuple(events)))

    sim = Simulation([EngineConfig(num_gpu_blocks=40)] * 2, lambda req, views: int(req.request_id[1:]) % 2,
                     kv_events=on_events, kv_event_delay_s=0.01)
    records = sim.run(requests)
    assert all(r.error is None for r in records) and seen == sorted(seen)
    assert translator.counters.removed > 0  # 40 blocks per engine: prefixes were evicted
    for p in prefixes:
        hashes = block_hashes(p, 16, "llama-3-8b")
        for view in sim.engines:
            assert index.matched_blocks(hashes, [f"10.0.0.{view.index}:8000"])[f"10.0.0.{view.index}:8000"] == \
                view.cached_prefix_blocks(hashes)
