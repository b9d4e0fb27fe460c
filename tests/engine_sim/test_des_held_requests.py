"""A router may hold a request (route returns None) and hand it back later with submit()."""

from __future__ import annotations

from collections.abc import Sequence

from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import EngineView, Simulation


def _req(i: int, t: float, adapter: str | None = None) -> SimRequest:
    return SimRequest(f"r{i}", list(range(100 + i, 164 + i)), 8, t, adapter=adapter)


def test_a_held_request_runs_after_its_resubmission_and_its_ttft_counts_the_wait() -> None:
    sim: Simulation

    def route(req: SimRequest, engines: Sequence[EngineView]) -> int | None:
        if req.adapter is not None and req.adapter not in engines[0].adapters:
            sim.load_adapter(0, req.adapter)
            sim.submit(sim.now + 2.0, req, engine=0)  # an adapter load that takes 2 s
            return None
        return 0

    sim = Simulation([EngineConfig(max_loras=2)], route)
    records = {r.request_id: r for r in sim.run([_req(0, 0.0), _req(1, 1.0, "sql"), _req(2, 1.5, "sql")])}
    assert all(r.error is None for r in records.values())
    assert records["r1"].first_token_s >= 3.0  # held from 1.0 until the load finished at 3.0
    assert records["r1"].ttft_s >= 2.0
    assert records["r2"].ttft_s < 1.0  # the adapter was resident by then


def test_resubmitting_without_an_engine_routes_again() -> None:
    sim: Simulation
    seen: list[float] = []

    def route(req: SimRequest, engines: Sequence[EngineView]) -> int | None:
        seen.append(sim.now)
        if len(seen) == 1:
            sim.submit(5.0, req)
            return None
        return 0

    sim = Simulation([EngineConfig()], route)
    [record] = sim.run([_req(0, 0.0)])
    assert seen == [0.0, 5.0] and record.error is None and record.first_token_s >= 5.0


def test_unload_adapter_makes_new_requests_fail_like_vllm() -> None:
    sim = Simulation([EngineConfig()], lambda req, engines: 0, adapters=["a"])
    sim.unload_adapter(0, "a")
    [record] = sim.run([_req(0, 0.0, "a")])
    assert record.error is not None and "does not exist" in record.error
