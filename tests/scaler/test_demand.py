"""The gateway demand source: reading held + in-flight requests, the zero gate, starting pods."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from runtime_components.scaler.demand import DemandReading, ZeroGate, read_demand, uncovered_held
from tests.scaler.helpers import serve

PAGE = """# TYPE aibrix_gateway_flow_held_requests gauge
aibrix_gateway_flow_held_requests{model="m"} 3.0
aibrix_gateway_flow_held_requests{model="other"} 7.0
# TYPE aibrix_gateway_flow_inflight_requests gauge
aibrix_gateway_flow_inflight_requests{model="m"} 5.0
"""


def test_read_demand_sums_replicas_and_reports_the_one_that_failed():
    async def run() -> DemandReading:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text=PAGE)

        app = web.Application()
        app.router.add_get("/metrics", page)
        async with serve(app) as url, aiohttp.ClientSession() as session:
            return await read_demand(session, [url + "/metrics", url + "/metrics", "http://127.0.0.1:9/metrics"], "m", 2.0)

    reading = asyncio.run(run())
    assert (reading.held, reading.inflight, reading.total) == (6.0, 10.0, 16.0)
    assert not reading.complete and len(reading.errors) == 1 and "127.0.0.1:9" in reading.errors[0]


def zero(complete: bool = True) -> DemandReading:
    return DemandReading(0, 0, complete)


def test_zero_gate_holds_one_while_there_is_demand_and_goes_to_zero_after_the_grace():
    gate = ZeroGate(grace_s=10)
    assert gate.bound(0, 0) == (0, None)  # nothing read yet: the policy decides
    gate.observe(1, DemandReading(held=1, inflight=0, complete=True))
    assert gate.bound(1, 0) == (1, "demand-holds-one")
    gate.observe(2, zero())
    assert gate.bound(5, 0) == (1, "demand-holds-one")  # demand seen 4 s ago, within the grace
    assert gate.bound(5, 3) == (3, None)
    gate.observe(8, zero())
    assert gate.bound(12, 1) == (0, "idle-to-zero")  # zero since t=2, 10 s of grace


def test_an_unreadable_gateway_is_not_idleness():
    gate = ZeroGate(grace_s=10)
    gate.observe(0, zero())
    gate.observe(5, zero(complete=False))  # restarts the idle run
    gate.observe(6, zero())
    assert gate.bound(12, 1) == (1, None)
    assert gate.bound(16, 1) == (0, "idle-to-zero")


def test_held_requests_that_starting_pods_will_absorb_are_not_new_demand():
    assert uncovered_held(held=10, spec_replicas=3, ready_pods=1, target=4) == 2  # two starting pods take 8
    assert uncovered_held(held=5, spec_replicas=2, ready_pods=0, target=4) == 0
    assert uncovered_held(held=5, spec_replicas=1, ready_pods=1, target=4) == 5
