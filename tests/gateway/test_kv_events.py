"""KV events into the gateway's prefix index: translation to our hashes, and the simulated
engine's publisher to the gateway's subscriber over real ZMQ (store, evict, gap, clear)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest
import yaml

from aibrix_spec.components.gateway import GatewayConfig
from runtime_components.common.hashing import block_hashes
from runtime_components.common.kv_event_format import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventBatch,
    encode_batch,
    encode_seq,
)
from runtime_components.common.tokens import tokenize
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.kv_publisher import KVEventsSettings, parse_kv_events_config
from runtime_components.engine_sim.server import EngineServer
from runtime_components.gateway.app import GatewayApp
from runtime_components.gateway.kv_events import EventTranslator, KVEventSubscriber
from runtime_components.gateway.policy.prefix import PrefixIndex

TOKENS = list(range(1000, 1048))  # three blocks of 16


def translator(index: PrefixIndex, max_blocks: int = 100) -> EventTranslator:
    return EventTranslator(index, "m", 16, max_blocks)


def held(index: PrefixIndex, hashes: list[int], address: str = "a") -> int:
    return index.matched_blocks(hashes, [address])[address]


def test_stored_blocks_become_our_chained_hashes_whatever_the_engine_calls_them():
    index = PrefixIndex(1000)
    t = translator(index)
    ours = block_hashes(TOKENS, 16, "m")
    t.apply("a", EventBatch(0.0, (BlockStored((901, 902), None, tuple(TOKENS[:32]), 16),)))
    t.apply("a", EventBatch(0.0, (BlockStored((903,), 902, tuple(TOKENS[32:]), 16),)))
    assert held(index, ours) == 3 and held(index, ours, "b") == 0
    t.apply("a", EventBatch(0.0, (BlockRemoved((902,)),)))
    assert held(index, ours) == 1  # the chain breaks where the engine evicted
    assert t.counters.stored == 3 and t.counters.removed == 1


def test_an_adapters_blocks_are_salted_with_model_plus_adapter():
    index = PrefixIndex(1000)
    translator(index).apply("a", EventBatch(0.0, (BlockStored((1,), None, tuple(TOKENS[:16]), 16, "sql"),)))
    assert held(index, block_hashes(TOKENS[:16], 16, "m+sql")) == 1
    assert held(index, block_hashes(TOKENS[:16], 16, "m")) == 0


def test_what_cannot_be_translated_is_counted_not_guessed():
    index = PrefixIndex(1000)
    t = translator(index)
    t.apply("a", EventBatch(0.0, (
        BlockStored((5,), 777, tuple(TOKENS[:16]), 16),  # parent never seen
        BlockStored((6,), None, tuple(range(32)), 32),  # another block size
        BlockRemoved((99,)),
    )))
    assert len(index) == 0
    c = t.counters
    assert (c.unknown_parent, c.block_size_mismatch, c.unknown_removed) == (1, 1, 1)


def test_the_engine_hash_map_is_bounded_per_endpoint():
    index = PrefixIndex(1000)
    t = translator(index, max_blocks=2)
    t.apply("a", EventBatch(0.0, (BlockStored((1, 2, 3), None, tuple(TOKENS), 16),)))
    assert t.mapped("a") == 2
    t.apply("a", EventBatch(0.0, (BlockRemoved((1,)),)))  # forgotten: cannot be removed any more
    assert t.counters.unknown_removed == 1


def test_all_blocks_cleared_forgets_the_endpoint_only():
    index = PrefixIndex(1000)
    t = translator(index)
    for address in ("a", "b"):
        t.apply(address, EventBatch(0.0, (BlockStored((1,), None, tuple(TOKENS[:16]), 16),)))
    t.apply("a", EventBatch(0.0, (AllBlocksCleared(),)))
    ours = block_hashes(TOKENS[:16], 16, "m")
    assert held(index, ours, "a") == 0 and held(index, ours, "b") == 1


def test_a_sequence_gap_or_restart_forgets_the_endpoints_blocks():
    async def scenario() -> None:
        index = PrefixIndex(1000)
        sub = KVEventSubscriber(translator(index))
        stored = encode_batch(EventBatch(0.0, (BlockStored((1,), None, tuple(TOKENS[:16]), 16),)))
        ours = block_hashes(TOKENS[:16], 16, "m")
        sub.handle("a", [b"", encode_seq(5), stored])  # a first message: taken as it comes
        sub.handle("a", [b"", encode_seq(6), encode_batch(EventBatch(0.0, ()))])
        assert held(index, ours) == 1 and sub.counters.gaps == 0
        sub.handle("a", [b"", encode_seq(9), encode_batch(EventBatch(0.0, ()))])  # 7 and 8 were lost
        assert held(index, ours) == 0 and sub.counters.gaps == 1
        sub.handle("a", [b"", encode_seq(10), stored])
        sub.handle("a", [b"", encode_seq(0), encode_batch(EventBatch(0.0, ()))])  # the engine restarted
        assert held(index, ours) == 0 and sub.counters.gaps == 2
        sub.handle("a", [b"", b"x", b""])
        assert sub.counters.decode_errors == 1
        await sub.close()

    asyncio.run(scenario())


def test_the_kv_events_config_reads_vllms_json():
    assert parse_kv_events_config('{"enable_kv_cache_events": true, "publisher": "zmq", '
                                  '"endpoint": "tcp://*:5557", "topic": "kv"}') == KVEventsSettings("*", 5557, "kv")
    assert parse_kv_events_config('{"enable_kv_cache_events": false}') is None
    with pytest.raises(ValueError, match="unknown key"):
        parse_kv_events_config('{"enable_kv_cache_events": true, "endpont": "tcp://*:1"}')
    with pytest.raises(ValueError, match="endpoint must be tcp://HOST:PORT"):
        parse_kv_events_config('{"enable_kv_cache_events": true, "endpoint": "ipc:///tmp/x"}')


async def _until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def _complete(session: aiohttp.ClientSession, port: int, prompt: str) -> None:
    async with session.post(f"http://127.0.0.1:{port}/v1/completions",
                            json={"model": "m", "prompt": prompt, "max_tokens": 2}) as resp:
        assert resp.status == 200, await resp.text()


@pytest.mark.slow
def test_the_simulated_engine_feeds_the_gateway_index_over_zmq(tmp_path):
    """Store, evict and gap, end to end: engine_sim publishes, the gateway app subscribes."""

    async def scenario() -> None:
        engine = EngineServer(EngineConfig(served_model_name="m", num_gpu_blocks=24), speedup=50,
                              kv_events=KVEventsSettings("127.0.0.1", 0))
        port = await engine.start()
        assert engine.kv_publisher is not None
        address = f"127.0.0.1:{port}"
        endpoints = tmp_path / "endpoints.yaml"
        endpoints.write_text(yaml.safe_dump({"endpoints": [
            {"address": address, "model": "m", "kvEventsPort": engine.kv_publisher.port}]}))
        app = GatewayApp(GatewayConfig.model_validate({
            "listen": {"grpcPort": 0, "httpPort": 0, "host": "127.0.0.1"},
            "discovery": {"mode": "static", "endpointsFile": str(endpoints)},
            "models": [{"name": "m", "kvEventsPort": 1, "routing": {
                "policy": "prefix-cache-aware", "parameters": {"prefixCacheAware": {"index": "kv-events"}}}}],
        }))
        await app.start()
        subscriber = app.kv_events["m"]
        index = app.core.event_indexes["m"]
        try:
            assert subscriber.endpoints == {address: f"tcp://127.0.0.1:{engine.kv_publisher.port}"}
            first = "Schema: " + " ".join(f"t{i} int" for i in range(60))  # ~10 blocks
            ours = block_hashes(tokenize(first), 16, "m")
            full = len(ours)
            async with aiohttp.ClientSession() as session:
                # a SUB socket misses what is published before its subscription lands: warm up until one arrives
                for k in range(50):
                    await _complete(session, port, f"warm up {k} " * 20)
                    if await _until(lambda: subscriber.batches >= 1, 0.2):
                        break
                assert subscriber.batches >= 1, "no KV event batch reached the gateway"
                await _complete(session, port, first)
                assert await _until(lambda: held(index, ours, address) == full), "BlockStored never arrived"
                # 24 blocks in all: two other long prompts evict the first one's blocks
                for k in range(3):
                    await _complete(session, port, f"Other {k}: " + " ".join(f"c{k}{i} text" for i in range(60)))
                assert await _until(lambda: held(index, ours, address) < full), "BlockRemoved never arrived"
                assert subscriber.counters.removed > 0 and subscriber.counters.gaps == 0
                # a lost batch: the next one shows the gap, and the engine's entries are forgotten
                engine.kv_publisher.skip()
                await _complete(session, port, first)
                assert await _until(lambda: subscriber.counters.gaps == 1)
                async with app_metrics(app) as text:
                    assert 'aibrix_gateway_kv_event_gaps_total{model="m"} 1.0' in text
                    assert 'aibrix_gateway_kv_event_blocks_total{kind="stored",model="m"}' in text
                    assert f'aibrix_gateway_kv_event_batches_total{{model="m"}} {float(subscriber.batches)}' in text
                # a reset empties the engine's cache: AllBlocksCleared
                async with session.post(f"http://127.0.0.1:{port}/reset_prefix_cache") as resp:
                    assert resp.status == 200
                assert await _until(lambda: subscriber.counters.cleared >= 1)
                assert held(index, ours, address) == 0
            # discovery drops the engine: its subscription ends
            endpoints.write_text(yaml.safe_dump({"endpoints": []}))
            app.discovery.poll()
            assert subscriber.endpoints == {}
        finally:
            await app.stop()
            await engine.stop()

    asyncio.run(scenario())


class app_metrics:  # noqa: N801 - reads like a context manager
    def __init__(self, app: GatewayApp) -> None:
        self.app = app

    async def __aenter__(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{self.app.http_port}/metrics") as r:
            return await r.text()

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_an_endpoints_file_kv_events_port_must_be_a_port(tmp_path):
    from runtime_components.gateway.discovery.static import EndpointsFileError, load_endpoints_file

    path = tmp_path / "e.yaml"
    path.write_text(json.dumps({"endpoints": [{"address": "127.0.0.1:1", "model": "m", "kvEventsPort": "x"}]}))
    with pytest.raises(EndpointsFileError, match="kvEventsPort must be a port number"):
        load_endpoints_file(str(path), {"m"})


def test_kv_events_mode_needs_the_models_events_port():
    with pytest.raises(ValueError, match="kvEventsPort is not set"):
        GatewayConfig.model_validate({"models": [{"name": "m", "routing": {
            "policy": "prefix-cache-aware", "parameters": {"prefixCacheAware": {"index": "kv-events"}}}}]})
