"""Routing state shared between gateway processes: what one learns, the others route on.

Two routers stand for two gateway replicas (or two workers of one pod); each has its own
``RoutingSync``. The transports are the real ones: a redis-server stream, the pod-local hub
over a Unix socket, and (for the failure cases) the in-memory bus.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from aibrix_spec.components.gateway import GatewayConfig
from aibrix_spec.routing import RoutingSpec
from runtime_components.common.hashing import block_hashes
from runtime_components.gateway.app import GatewayApp
from runtime_components.gateway.policy import EndpointPool, EndpointState, Router, RouteRequest, build_router
from runtime_components.gateway.routing_sync import (
    HubTransport,
    RedisStreamTransport,
    RoutingSync,
    decode_batch,
    encode_batch,
    serve_hub,
)
from runtime_components.gateway.routing_sync.codec import PREFIX_ADD, BadBatch
from runtime_components.gateway.routing_sync.transports import MemoryBus, Transport

from .fake_engine import FakeEngine
from .harness import RedisProcess

POLICY = "prefix-cache-aware:2,least-request"
ENDPOINTS = [EndpointState(address=f"10.0.0.{i}:8000", model="m") for i in range(8)]
PROMPT = list(range(200))


def _router(sync: RoutingSync, policy: str = POLICY) -> Router:
    return build_router(RoutingSpec(policy=policy), rng=random.Random(0), state=sync.state, scope="m")


def _request(tokens: list[int] = PROMPT, session: str | None = None) -> RouteRequest:
    return RouteRequest(model="m", token_ids=tokens, session_id=session)


async def _eventually(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _two_replicas(a: Transport, b: Transport, body: Callable[..., Awaitable[None]]) -> None:
    sync_a, sync_b = RoutingSync(a, origin="a", flush_interval_s=0.002), RoutingSync(b, origin="b", flush_interval_s=0.002)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sync_a.run(stop)), asyncio.create_task(sync_b.run(stop))]
    try:
        await _eventually(lambda: sync_a.stats.connected and sync_b.stats.connected, "both connected")
        await body(sync_a, sync_b)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _prefix_and_session_travel(sync_a: RoutingSync, sync_b: RoutingSync) -> None:
    router_a, router_b = _router(sync_a), _router(sync_b)
    sessions_a, sessions_b = _router(sync_a, "session-affinity"), _router(sync_b, "session-affinity")
    pool = EndpointPool(ENDPOINTS)
    # Replica a routes the prompt (to whichever pod); replica b has never seen it.
    chosen = router_a.decide(_request(), pool).endpoint
    router_a.on_routed(_request(), chosen)
    sessions_a.on_routed(_request(session="s1"), ENDPOINTS[5])
    await _eventually(lambda: sync_b.stats.events_applied >= 2, "b to apply a's changes")
    decision = router_b.decide(_request(PROMPT + [7, 7, 7]), pool)
    assert decision.endpoint.address == chosen.address
    assert decision.prefix_match == 1.0
    assert sessions_b.decide(_request(session="s1"), pool).endpoint.address == ENDPOINTS[5].address
    # Discovery drops the pod on replica b: replica a forgets it too.
    router_b.on_endpoint_removed(chosen.address)
    index_a = sync_a.state.prefix_indexes["m|16"]
    await _eventually(lambda: index_a.matched_blocks(block_hashes(PROMPT, 16, "m"), [chosen.address])[chosen.address] == 0,
                      "a to forget the removed pod")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (scripts/test installs it)")
def test_replicas_share_prefixes_and_sessions_through_redis(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)
    try:
        asyncio.run(_two_replicas(RedisStreamTransport(server.url, key="t:1"), RedisStreamTransport(server.url, key="t:1"),
                                  _prefix_and_session_travel))
    finally:
        server.stop()


def test_workers_share_prefixes_and_sessions_through_the_pod_hub(tmp_path: Path) -> None:
    path = str(tmp_path / "hub.sock")

    async def run() -> None:
        stop = asyncio.Event()
        hub = asyncio.create_task(serve_hub(path, stop))
        await _eventually(lambda: Path(path).exists(), "the hub socket")
        try:
            await _two_replicas(HubTransport(path), HubTransport(path), _prefix_and_session_travel)
        finally:
            stop.set()
            await hub
        assert not Path(path).exists()

    asyncio.run(run())


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (scripts/test installs it)")
def test_a_starting_replica_replays_the_stream(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)

    async def run() -> None:
        first = RoutingSync(RedisStreamTransport(server.url, key="t:2"), origin="first", flush_interval_s=0.001)
        stop = asyncio.Event()
        task = asyncio.create_task(first.run(stop))
        await _eventually(lambda: first.stats.connected, "first connected")
        router = _router(first)
        router.on_routed(_request(), ENDPOINTS[3])
        await _eventually(lambda: first.stats.events_sent == 1, "the batch sent")
        stop.set()
        await task
        late = RoutingSync(RedisStreamTransport(server.url, key="t:2"), origin="late")
        late_router = _router(late)
        stop = asyncio.Event()
        task = asyncio.create_task(late.run(stop))
        await _eventually(lambda: late.stats.events_applied == 1, "the warm start")
        assert late_router.decide(_request(), EndpointPool(ENDPOINTS)).endpoint.address == ENDPOINTS[3].address
        stop.set()
        await task

    try:
        asyncio.run(run())
    finally:
        server.stop()


def test_a_replica_that_loses_the_store_routes_locally_and_reconnects() -> None:
    async def body(sync_a: RoutingSync, sync_b: RoutingSync) -> None:
        router_a, _ = _router(sync_a), _router(sync_b)
        bus.up = False
        router_a.on_routed(_request(), ENDPOINTS[2])  # learned while the store is down
        await _eventually(lambda: not sync_a.stats.connected, "a to notice")
        assert sync_a.stats.events_dropped >= 1
        # a still routes on what it knows locally
        assert router_a.decide(_request(), EndpointPool(ENDPOINTS)).endpoint.address == ENDPOINTS[2].address
        bus.up = True
        await _eventually(lambda: sync_a.stats.connected, "a to reconnect", timeout_s=5)
        router_a.on_routed(_request(list(range(500, 600))), ENDPOINTS[4])
        await _eventually(lambda: sync_b.stats.events_applied >= 1, "b to hear a again")

    bus = MemoryBus()
    a, b = bus.transport(), bus.transport()

    async def run() -> None:
        sync_a, sync_b = (RoutingSync(t, origin=o, flush_interval_s=0.001, retry_s=0.05) for t, o in ((a, "a"), (b, "b")))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(sync_a.run(stop)), asyncio.create_task(sync_b.run(stop))]
        await _eventually(lambda: sync_a.stats.connected and sync_b.stats.connected, "connected")
        try:
            await body(sync_a, sync_b)
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    asyncio.run(run())


def test_batches_round_trip_and_foreign_ones_are_refused() -> None:
    events = [[PREFIX_ADD, "p|m|16", "10.0.0.1:8000", [2**64 - 1, 5]]]
    assert decode_batch(encode_batch("o", events)) == ("o", events)
    for junk in (b"\x00\x01", encode_batch("o", [[99, "x"]]), b"not msgpack at all \xc1"):
        with pytest.raises(BadBatch):
            decode_batch(junk)
    sync = RoutingSync(MemoryBus().transport(), origin="me")
    assert sync.apply_payload(b"\xc1") == 0 and sync.stats.bad_batches == 1
    assert sync.apply_payload(encode_batch("me", events)) == 0  # our own echo
    assert sync.apply_payload(encode_batch("other", events)) == 0 and sync.stats.events_unknown_key == 1


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (scripts/test installs it)")
def test_two_gateway_apps_with_redis_route_a_prefix_to_the_same_pod(tmp_path: Path) -> None:
    """The real wiring: config -> GatewayApp -> core.admit on two apps sharing one Redis."""
    server = RedisProcess(tmp_path)
    engines = [FakeEngine(f"e{i}", "m").start() for i in range(6)]
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text("[" + ",".join(f'{{"host": "127.0.0.1", "port": {e.port}, "model": "m"}}' for e in engines) + "]")

    def config(port_seed: int) -> GatewayConfig:
        return GatewayConfig.model_validate({
            "listen": {"host": "127.0.0.1", "grpcPort": 0, "httpPort": 0},
            "discovery": {"mode": "static", "endpointsFile": str(endpoints)},
            "models": [{"name": "m", "routing": {"policy": POLICY}}],
            "routingState": {"redisUrl": server.url, "streamKey": "t:apps", "flushIntervalMs": 1},
            "seed": port_seed,
        })

    async def run() -> None:
        apps = [GatewayApp(config(1)), GatewayApp(config(2))]
        for app in apps:
            await app.start()
        try:
            await _eventually(lambda: all(a.sync is not None and a.sync.stats.connected for a in apps), "syncs connected")
            user = apps[0].users.authenticate(None)
            body = b'{"model": "m", "prompt": "' + b"a shared system prompt " * 40 + b'"}'
            first = await apps[0].core.admit(user, "/v1/completions", {}, body)
            assert apps[1].sync is not None
            await _eventually(lambda: apps[1].sync.stats.events_applied >= 1, "the second app to learn")  # type: ignore[union-attr]
            second = await apps[1].core.admit(user, "/v1/completions", {}, body)
            assert second.endpoint.address == first.endpoint.address
            page = (await apps[1]._metrics(None)).body.decode()  # type: ignore[arg-type,union-attr]
            assert "aibrix_gateway_routing_sync_connected 1.0" in page
            assert 'aibrix_gateway_routing_sync_events_total{direction="applied"} 1.0' in page
        finally:
            for app in apps:
                await app.stop()

    try:
        asyncio.run(run())
    finally:
        server.stop()
        for engine in engines:
            engine.stop()
