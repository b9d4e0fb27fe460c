"""A light user is offered the engines this gateway sent the fewest prompt tokens to lately."""

from __future__ import annotations

import asyncio

from aibrix_spec.components.gateway import FlowControlConfig, SaturationSpec
from runtime_components.gateway.flow import FlowController
from runtime_components.gateway.flow.prefill import RecentPrefill
from runtime_components.gateway.policy.types import EndpointState


def states(*inflight: int) -> list[EndpointState]:
    return [EndpointState(address=f"10.0.0.{i + 1}:8000", running=8, waiting=0, kv_cache_usage=0.5, inflight=n)
            for i, n in enumerate(inflight)]


def test_tokens_count_within_the_window_only():
    recent = RecentPrefill(window_s=0.5)
    recent.add("10.0.0.1:8000", 500, now=10.0)
    recent.add("10.0.0.1:8000", 300, now=10.3)
    assert recent.tokens("10.0.0.1:8000", 10.4) == 800
    assert recent.tokens("10.0.0.1:8000", 10.6) == 300  # the first is half a second old
    assert recent.tokens("10.0.0.1:8000", 10.8) == 0
    assert recent.tokens("10.0.0.2:8000", 10.8) == 0  # never sent to


def test_an_endpoint_without_recent_prompts_is_forgotten():
    recent = RecentPrefill(window_s=0.5)
    for i in range(100):
        recent.add(f"10.0.1.{i}:8000", 10, now=1.0)
    assert sum(recent.tokens(f"10.0.1.{i}:8000", 2.0) for i in range(100)) == 0
    assert not recent._sent and not recent._total  # memory is bounded by the window


def test_lightest_keeps_every_endpoint_tied_at_the_least():
    recent = RecentPrefill(window_s=0.5)
    endpoints = states(0, 0, 0)
    assert recent.lightest(endpoints, 1.0) == endpoints  # nothing sent: the router keeps its choice
    recent.add("10.0.0.1:8000", 900, now=1.0)
    recent.add("10.0.0.3:8000", 200, now=1.0)
    assert [e.address for e in recent.lightest(endpoints, 1.1)] == ["10.0.0.2:8000"]
    recent.add("10.0.0.2:8000", 200, now=1.1)
    assert [e.address for e in recent.lightest(endpoints, 1.2)] == ["10.0.0.2:8000", "10.0.0.3:8000"]


def test_a_light_user_is_offered_the_engines_prefilling_least_a_heavy_one_every_engine_with_room():
    async def run() -> None:
        current = states(0, 0)
        flow = FlowController(FlowControlConfig(enabled=True, saturation=SaturationSpec(max_waiting_per_engine=8)),
                              {}, lambda model: current)
        flow._prefill = RecentPrefill(window_s=600.0)  # a slow machine must not age the prompts out
        room = await flow.hold("m", "B", 0, 100)
        assert room is not None and len(room) == 2  # alone: not steered
        flow.routed("10.0.0.2:8000", 100)
        # Heavy user A has 6 requests in flight, 5 of them long prompts sent to the first engine.
        for i in range(6):
            assert await flow.hold("m", "A", 0, 600) is not None
            flow.routed("10.0.0.1:8000" if i < 5 else "10.0.0.2:8000", 600)
        current[:] = states(5, 2)
        assert flow.under_share("m", "B") is True and flow.under_share("m", "A") is False
        room = await flow.hold("m", "B", 0, 300)
        assert room is not None and [e.address for e in room] == ["10.0.0.2:8000"]
        room = await flow.hold("m", "A", 0, 600)
        assert room is not None and len(room) == 2

    asyncio.run(run())


def test_a_queued_light_request_is_granted_the_engines_prefilling_least():
    async def run() -> None:
        current = states(0, 0)
        saturation = SaturationSpec(max_waiting_per_engine=2, under_share_reserve=1)
        flow = FlowController(FlowControlConfig(enabled=True, saturation=saturation, tick_s=0.01), {},
                              lambda model: current)
        flow._prefill = RecentPrefill(window_s=600.0)  # a slow machine must not age the prompts out
        assert await flow.hold("m", "B", 0, 100) is not None  # B has one in flight
        flow.routed("10.0.0.1:8000", 100)
        for address in ("10.0.0.1:8000", "10.0.0.2:8000"):  # A: running 8 + (2 - 1) places each
            for _ in range(9):
                assert await flow.hold("m", "A", 0, 500) is not None
                flow.routed(address, 500)
        current[:] = states(9 + 1, 9)  # every place of A's taken; B's reserve left
        held = asyncio.create_task(flow.hold("m", "A", 0, 500))
        await asyncio.sleep(0.03)
        assert not held.done()
        current[:] = states(10, 10)  # now full for everyone: B waits behind A's request
        light = asyncio.create_task(flow.hold("m", "B", 0, 100))
        await asyncio.sleep(0.03)
        assert not light.done()
        current[:] = states(9, 9)  # a place frees on each engine: A's head still has none, B passes it
        room = await asyncio.wait_for(light, 1.0)
        assert room is not None and [e.address for e in room] == ["10.0.0.2:8000"]  # 4,500 tokens against 4,600
        assert not held.done()
        flow.routed("10.0.0.2:8000", 100)
        flow.wake("m", "B")
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)

    asyncio.run(run())


def test_routed_is_a_no_op_when_flow_control_is_off():
    flow = FlowController(FlowControlConfig(enabled=False), {}, lambda model: [])
    flow.routed("10.0.0.1:8000", 100)
    assert flow._prefill.tokens("10.0.0.1:8000", 0.0) == 0
