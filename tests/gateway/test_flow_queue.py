"""Flow control's pure parts and its dispatcher, driven in-process with a fake endpoint list."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from aibrix_spec.components.gateway import FlowControlConfig, SaturationSpec, TierSpec
from runtime_components.gateway.errors import GatewayError
from runtime_components.gateway.flow import FlowController, FlowMetrics
from runtime_components.gateway.flow.fairness import Held, RoundRobinFair, VirtualTimeFair
from runtime_components.gateway.flow.queue import ModelQueue
from runtime_components.gateway.flow.saturation import SaturationDetector, under_share
from runtime_components.gateway.policy.types import EndpointState


def held(flow: str, seq: int, priority: int = 0, cost: float = 1.0) -> Held:
    return Held(flow=flow, priority=priority, cost=cost, seq=seq)


def drain(fair) -> list[str]:
    out = []
    while len(fair):
        item = fair.pop()
        out.append(f"{item.flow}{item.seq}")
    return out


def test_round_robin_alternates_users_and_keeps_each_users_order():
    fair = RoundRobinFair()
    for i, flow in enumerate("AAAAB B".replace(" ", "")):
        fair.push(held(flow, i))
    assert drain(fair) == ["A0", "B4", "A1", "B5", "A2", "A3"]


def test_virtual_time_weighs_users_by_tokens():
    fair = VirtualTimeFair()
    fair.push(held("big", 0, cost=400))
    fair.push(held("big", 1, cost=400))
    for i in range(2, 6):
        fair.push(held("small", i, cost=100))
    # big's second request starts at virtual time 400: all four small ones (starts 0..300) go first.
    assert drain(fair) == ["big0", "small2", "small3", "small4", "small5", "big1"]


def test_a_late_user_is_not_starved_by_a_backlog():
    fair = VirtualTimeFair()
    for i in range(10):
        fair.push(held("A", i, cost=10))
    assert fair.pop().seq == 0
    fair.push(held("B", 10, cost=10))
    assert fair.pop().flow == "B"  # B starts at the band's clock, not behind A's backlog


def test_bands_go_highest_first_and_shedding_takes_the_newest_of_the_lowest():
    queue = ModelQueue("round-robin")
    for i, priority in enumerate([0, 5, 0, 1]):
        queue.push(held("u", i, priority=priority))
    assert queue.lowest().seq == 2
    assert [queue.pop().priority for _ in range(4)] == [5, 1, 0, 0]
    assert queue.lowest() is None


@pytest.mark.parametrize(
    ("state", "slots"),
    [
        (dict(), 0),  # never scraped (or stale): full
        (dict(running=4, waiting=0, kv_cache_usage=0.1, inflight=4), 8),
        (dict(running=4, waiting=8, kv_cache_usage=0.1), 0),
        (dict(running=4, waiting=0, kv_cache_usage=0.95), 0),
        (dict(running=0, waiting=0, kv_cache_usage=0.0, inflight=10), 0),
        (dict(running=30, waiting=0, kv_cache_usage=0.0, inflight=2), 36),
    ],
)
def test_saturation_slots(state, slots):
    detector = SaturationDetector(SaturationSpec(max_waiting_per_engine=8, max_kv_cache_usage=0.9))
    assert detector.slots(EndpointState(address="10.0.0.1:8000", **state)) == slots


def test_inflight_cap_bounds_slots():
    detector = SaturationDetector(SaturationSpec(max_inflight_per_engine=3))
    assert detector.slots(EndpointState(address="10.0.0.1:8000", running=50, waiting=0, inflight=1)) == 2


def test_a_user_over_its_share_sees_the_budget_less_the_reserve():
    detector = SaturationDetector(SaturationSpec(max_waiting_per_engine=8))  # reserve: 3/4 of 8
    state = EndpointState(address="10.0.0.1:8000", running=4, waiting=0, kv_cache_usage=0.1, inflight=4)
    assert detector.slots(state, under_share=True) == 8
    assert detector.slots(state, under_share=False) == 2
    waiting = EndpointState(address="10.0.0.1:8000", running=4, waiting=2, kv_cache_usage=0.1, inflight=4)
    assert detector.slots(waiting, under_share=False) == 0  # two waiting: full for a heavy user
    assert detector.slots(waiting, under_share=True) == 8
    full_kv = EndpointState(address="10.0.0.1:8000", running=4, waiting=0, kv_cache_usage=0.95, inflight=4)
    assert detector.slots(full_kv, under_share=False) == 0  # the KV threshold holds back heavy users
    assert detector.slots(full_kv, under_share=True) == 8  # a light user is bounded by the budget alone
    assert detector.share(1, 90, 3) is True and detector.share(88, 90, 3) is False
    assert detector.share(90, 90, 1) is None  # the only active user: nobody to keep room for
    assert detector.slots(state, under_share=None) == 8 and detector.slots(full_kv, under_share=None) == 0


def test_reserve_zero_turns_the_headroom_off():
    off = SaturationDetector(SaturationSpec(max_waiting_per_engine=8, under_share_reserve=0))
    assert off.share(1, 90, 3) is None  # no regard to shares: every user sees the same budget and KV threshold
    state = EndpointState(address="10.0.0.1:8000", running=4, waiting=0, kv_cache_usage=0.1, inflight=4)
    assert off.slots(state, under_share=False) == 8


@pytest.mark.parametrize("fairness", [RoundRobinFair, VirtualTimeFair])
def test_first_of_finds_a_wanted_users_head_in_the_top_band_only(fairness):
    queue = ModelQueue("round-robin" if fairness is RoundRobinFair else "virtual-time")
    for i, (flow, priority) in enumerate([("A", 0), ("A", 0), ("B", 0), ("B", 0), ("L", -1)]):
        queue.push(held(flow, i, priority=priority))
    assert queue.first_of(lambda flow: flow == "L") is None  # a lower band never passes
    found = queue.first_of(lambda flow: flow == "B")
    assert (found.flow, found.seq) == ("B", 2)
    queue.take(found)
    rest = [(h.flow, h.seq) for h in (queue.pop(), queue.pop(), queue.pop(), queue.pop())]
    assert rest[0] == ("A", 0) and sorted(rest[1:3]) == [("A", 1), ("B", 3)] and rest[3] == ("L", 4)


def test_under_share_is_below_total_over_active_users():
    assert under_share(1, 90, 3)
    assert not under_share(88, 90, 3)
    assert not under_share(0, 0, 1)  # nothing in flight: nobody is below an equal share of nothing
    assert not under_share(5, 10, 2)  # exactly the share is not below it


def test_the_reserve_must_leave_heavy_users_a_place():
    assert SaturationSpec(max_waiting_per_engine=1).reserve == 0
    assert SaturationSpec(max_waiting_per_engine=8, under_share_reserve=7).reserve == 7
    with pytest.raises(ValueError, match="underShareReserve \\(8\\) must be below maxWaitingPerEngine \\(8\\)"):
        SaturationSpec(max_waiting_per_engine=8, under_share_reserve=8)


def test_a_light_user_passes_while_a_heavy_one_is_held_until_its_requests_finish():
    async def run() -> None:
        engines = Engines()
        engines.states = [EndpointState(address="10.0.0.1:8000", running=4, waiting=0, kv_cache_usage=0.1,
                                        inflight=0)]
        flow, _ = controller(engines, saturation=SaturationSpec(max_waiting_per_engine=8), tick_s=0.01)
        for _ in range(6):  # heavy user A: running 4 + (8 - 6) places
            assert await flow.hold("m", "A", 0, 100) is not None
        engines.states = [EndpointState(address="10.0.0.1:8000", running=4, waiting=0, kv_cache_usage=0.1,
                                        inflight=6)]
        assert flow.under_share("m", "A") is None  # alone: the whole budget
        assert flow.under_share("m", "B") is True
        assert await flow.hold("m", "B", 0, 100) is not None  # light: the whole budget, at once
        held = asyncio.create_task(flow.hold("m", "A", 0, 100))
        await asyncio.sleep(0.05)
        assert not held.done() and flow.held("m") == 1  # heavy: over its share, no place left
        engines.states = [EndpointState(address="10.0.0.1:8000", running=4, waiting=0, kv_cache_usage=0.1,
                                        inflight=3)]
        for _ in range(3):
            flow.wake("m", "A")
        assert await asyncio.wait_for(held, 1.0) is not None
        flow.wake("m", "B")
        assert flow._sent["m"] == {"A": 4}

    asyncio.run(run())


def test_a_light_users_request_passes_a_heavy_head_without_room_never_a_higher_band():
    async def run() -> None:
        engines = Engines()
        engines.states = [EndpointState(address="10.0.0.1:8000", running=4, waiting=0, kv_cache_usage=0.1,
                                        inflight=0)]
        flow, _ = controller(engines, saturation=SaturationSpec(max_waiting_per_engine=8), tick_s=0.01)
        assert await flow.hold("m", "B", 0, 100) is not None  # B has one in flight: A is not alone
        for _ in range(6):
            assert await flow.hold("m", "A", 0, 100) is not None
        engines.states = [EndpointState(address="10.0.0.1:8000", running=4, waiting=0, kv_cache_usage=0.1,
                                        inflight=7)]
        assert flow.under_share("m", "A") is False and flow.under_share("m", "B") is True
        heavy = [asyncio.create_task(flow.hold("m", "A", 0, 100)) for _ in range(2)]
        await asyncio.sleep(0.03)
        light = asyncio.create_task(flow.hold("m", "B", 0, 100))  # queued behind A's two
        assert await asyncio.wait_for(light, 1.0) is not None
        assert not any(task.done() for task in heavy) and flow.held("m") == 2
        for task in heavy:
            task.cancel()
        await asyncio.gather(*heavy, return_exceptions=True)
        assert flow.held("m") == 0

    asyncio.run(run())


class Engines:
    """A model's endpoints as flow control reads them; tests change them between steps."""

    def __init__(self) -> None:
        self.states: list[EndpointState] = []

    def set(self, n: int, inflight: int = 0, waiting: float = 0) -> None:
        self.states = [EndpointState(address=f"10.0.0.{i + 1}:8000", running=0, waiting=waiting, kv_cache_usage=0.0,
                                     inflight=inflight) for i in range(n)]

    def __call__(self, model: str) -> list[EndpointState]:
        return self.states


def controller(engines: Engines, **config) -> tuple[FlowController, CollectorRegistry]:
    registry = CollectorRegistry()
    config.setdefault("saturation", SaturationSpec(max_waiting_per_engine=1, max_inflight_per_engine=1))
    flow = FlowController(FlowControlConfig(enabled=True, **config), {"gold": TierSpec(rpm=1, tpm=1, priority=5)},
                          engines)
    flow.metrics = FlowMetrics(registry, flow.snapshot)
    return flow, registry


def metric(registry: CollectorRegistry, line_start: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return 0.0


def test_disabled_flow_control_never_holds():
    async def run() -> None:
        flow = FlowController(FlowControlConfig(), {}, Engines())
        assert await flow.hold("m", "u", 0, 10) is None

    asyncio.run(run())


def test_a_cold_start_hold_is_dispatched_when_the_first_engine_is_ready():
    async def run() -> None:
        engines = Engines()
        flow, registry = controller(engines, tick_s=0.01)
        task = asyncio.create_task(flow.hold("m", "u", 0, 10))
        await asyncio.sleep(0.05)
        assert not task.done() and flow.held("m") == 1
        assert metric(registry, 'aibrix_gateway_flow_held_requests{model="m"}') == 1
        engines.set(1)
        room = await asyncio.wait_for(task, 5)
        assert [e.address for e in room] == ["10.0.0.1:8000"]
        assert metric(registry, 'aibrix_gateway_flow_cold_start_holds_total{model="m"}') == 1
        assert metric(registry, 'aibrix_gateway_flow_cold_start_hold_seconds_count{model="m"}') == 1

    asyncio.run(run())


def test_cold_start_timeout_is_a_503_with_retry_after_and_saturation_timeout_a_429():
    async def run() -> None:
        engines = Engines()
        flow, registry = controller(engines, queue_timeout_s=0.05, tick_s=0.01)
        with pytest.raises(GatewayError) as cold:
            await flow.hold("m", "u", 0, 10)
        assert cold.value.status == 503 and cold.value.code == "cold_start_timeout"
        assert cold.value.headers["retry-after"] == "1"
        engines.set(1, inflight=1)  # the only engine is full
        with pytest.raises(GatewayError) as full:
            await flow.hold("m", "u", 0, 10)
        assert full.value.status == 429 and full.value.code == "over_capacity" and full.value.reason == "queue_timeout"
        assert b'"type": "rate_limit_error"' in full.value.body()
        assert metric(registry, 'aibrix_gateway_flow_shed_total{model="m",priority="0",reason="queue_timeout"}') == 1

    asyncio.run(run())


def test_a_full_queue_sheds_the_lowest_priority_first():
    async def run() -> None:
        engines = Engines()
        engines.set(1, inflight=1)
        flow, _ = controller(engines, max_queue_per_model=2)
        low = [asyncio.create_task(flow.hold("m", f"u{i}", 0, 1)) for i in range(2)]
        await asyncio.sleep(0)
        high = asyncio.create_task(flow.hold("m", "vip", 5, 1))
        await asyncio.sleep(0.01)
        assert low[1].done() and low[1].exception().reason == "evicted"  # the newest low one made place
        with pytest.raises(GatewayError) as refused:
            await flow.hold("m", "late", 0, 1)  # nothing below priority 0 to shed: refused itself
        assert refused.value.reason == "queue_full"
        engines.set(1, inflight=0)
        flow.wake("m")
        await asyncio.wait_for(high, 5)  # the free slot goes to the higher band
        assert not low[0].done()
        low[0].cancel()

    asyncio.run(run())


def test_a_cancelled_waiter_leaves_the_queue_at_once():
    async def run() -> None:
        engines = Engines()
        engines.set(1, inflight=1)
        flow, registry = controller(engines)
        task = asyncio.create_task(flow.hold("m", "u", 0, 1))
        await asyncio.sleep(0.01)
        assert flow.held("m") == 1
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled() and flow.held("m") == 0
        assert metric(registry, 'aibrix_gateway_flow_shed_total{model="m",priority="0",reason="client_gone"}') == 1

    asyncio.run(run())


def test_one_free_slot_is_granted_once():
    async def run() -> None:
        engines = Engines()
        engines.set(1, inflight=1)
        flow, _ = controller(engines, tick_s=0.01)

        async def hold_and_route(flow_name: str) -> None:
            await flow.hold("m", flow_name, 0, 1)
            engines.set(1, inflight=1)  # routing follows the grant without an await, as in GatewayCore.admit

        tasks = [asyncio.create_task(hold_and_route(f"u{i}")) for i in range(3)]
        await asyncio.sleep(0.01)
        engines.set(1, inflight=0)  # one slot
        await asyncio.sleep(0.05)
        assert sum(t.done() for t in tasks) == 1
        for t in tasks:
            t.cancel()

    asyncio.run(run())


def test_priority_header_may_lower_but_not_raise():
    flow = FlowController(FlowControlConfig(enabled=True, allow_priority_header=True),
                          {"gold": TierSpec(rpm=1, tpm=1, priority=5)}, Engines())
    assert flow.priority_of("gold", {}) == 5
    assert flow.priority_of("gold", {"x-request-priority": "2"}) == 2
    with pytest.raises(GatewayError, match="may lower a request's priority, not raise it"):
        flow.priority_of("gold", {"x-request-priority": "9"})
    with pytest.raises(GatewayError, match="whole number"):
        flow.priority_of("gold", {"x-request-priority": "high"})
    strict = FlowController(FlowControlConfig(enabled=True), {"gold": TierSpec(rpm=1, tpm=1, priority=5)}, Engines())
    assert strict.priority_of("gold", {"x-request-priority": "0"}) == 5  # not allowed: ignored
