"""Discrete-event simulation: routing, scaling during a run, external KV store, summaries."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import EngineView, Simulation, percentile, summarize


def _requests(n: int, rate: float, rng: random.Random, shared_prefix: int = 0) -> list[SimRequest]:
    prefix = [rng.randrange(32000) for _ in range(shared_prefix)]
    out, t = [], 0.0
    for i in range(n):
        t += rng.expovariate(rate)
        body = [rng.randrange(32000) for _ in range(rng.randint(20, 400))]
        out.append(SimRequest(f"r{i}", prefix + body, rng.randint(5, 60), t))
    return out


def least_loaded(req: SimRequest, engines: Sequence[EngineView]) -> int:
    return min(range(len(engines)), key=lambda i: engines[i].num_running + engines[i].num_waiting)


def test_every_request_finishes_once_with_consistent_times() -> None:
    reqs = _requests(300, 20.0, random.Random(3))
    records = Simulation([EngineConfig()] * 3, least_loaded).run(reqs)
    assert sorted(r.request_id for r in records) == sorted(r.request_id for r in reqs)
    for r in records:
        assert r.error is None
        assert r.arrival_s < r.first_token_s <= r.finish_s  # type: ignore[operator]
    assert {r.engine for r in records} == {0, 1, 2}


def test_more_engines_lower_latency_under_the_same_load() -> None:
    reqs = _requests(400, 40.0, random.Random(5))
    one = summarize(Simulation([EngineConfig(accelerator="nvidia-l4")], least_loaded).run(reqs))
    four = summarize(Simulation([EngineConfig(accelerator="nvidia-l4")] * 4, least_loaded).run(reqs))
    assert four.e2e.p90 < one.e2e.p90
    assert four.ttft.mean < one.ttft.mean


def test_runs_are_deterministic() -> None:
    reqs = _requests(200, 30.0, random.Random(7))
    a = Simulation([EngineConfig()] * 2, least_loaded).run(reqs)
    b = Simulation([EngineConfig()] * 2, least_loaded).run(reqs)
    assert a == b


def test_on_finished_runs_at_the_end_of_each_step_that_finished_requests() -> None:
    reqs = _requests(120, 15.0, random.Random(4))
    calls: list[tuple[float, int]] = []
    sim = Simulation([EngineConfig()] * 2, least_loaded)
    sim.on_finished = lambda s, now: calls.append((now, len(s.records)))
    records = sim.run(reqs)
    finish_times = {r.finish_s for r in records}
    assert {now for now, _ in calls} == finish_times  # once per step that ended a request, at its end
    assert len(calls) == len(finish_times)
    for now, seen in calls:  # the records of that step are already there
        assert seen >= sum(1 for r in records if r.finish_s <= now)


def test_engines_added_later_only_take_traffic_once_ready() -> None:
    reqs = _requests(300, 30.0, random.Random(9))
    sim = Simulation([EngineConfig()], least_loaded)
    sim.call_at(2.0, lambda s, now: s.add_engine(now, ready_after_s=3.0))
    records = sim.run(reqs)
    late = [r for r in records if r.engine == 1]
    assert late and min(r.arrival_s for r in late) >= 5.0


def test_removed_engines_drain_and_get_no_new_requests() -> None:
    reqs = _requests(300, 30.0, random.Random(11))
    sim = Simulation([EngineConfig()] * 2, least_loaded)
    sim.remove_engine(3.0, 1)
    records = sim.run(reqs)
    assert all(r.error is None for r in records)
    assert max(r.arrival_s for r in records if r.engine == 1) < 3.0
    assert sim.active_engine_count() == 1


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (lambda req, engines: 7, "route returned 7, expected 0..1"),
        (lambda req, engines: 1 // 0, "route failed: ZeroDivisionError"),
    ],
)
def test_bad_routing_decisions_become_request_errors(route, message: str) -> None:  # type: ignore[no-untyped-def]
    records = Simulation([EngineConfig()] * 2, route).run(_requests(3, 10.0, random.Random(1)))
    assert len(records) == 3 and all((r.error or "").startswith(message) for r in records)


def test_no_engine_and_until_s_give_error_records() -> None:
    sim = Simulation([EngineConfig()], least_loaded)
    sim.remove_engine(0.0, 0)
    assert {r.error for r in sim.run(_requests(5, 10.0, random.Random(2)))} == {"no ready engine"}
    cut = Simulation([EngineConfig()], least_loaded).run(_requests(50, 10.0, random.Random(2)), until_s=1.0)
    assert any(r.error == "unfinished at end of run" for r in cut)


class DictStore:
    """A test double of the external KV store: a set of hashes, fixed transfer cost."""

    def __init__(self) -> None:
        self.blocks: set[int] = set()
        self.lookups = 0

    def lookup(self, block_hashes: Sequence[int]) -> int:
        self.lookups += 1
        n = 0
        for h in block_hashes:
            if h not in self.blocks:
                break
            n += 1
        return n

    def store(self, block_hashes: Sequence[int]) -> None:
        self.blocks.update(block_hashes)

    def transfer_seconds(self, n_blocks: int) -> float:
        return 0.0001 * n_blocks


def test_external_store_shares_prefixes_across_engines() -> None:
    reqs = _requests(200, 20.0, random.Random(13), shared_prefix=1500)

    def round_robin(req: SimRequest, engines: Sequence[EngineView]) -> int:
        return int(req.request_id[1:]) % len(engines)

    plain = summarize(Simulation([EngineConfig(accelerator="nvidia-a10")] * 4, round_robin).run(reqs))
    store = DictStore()
    shared = summarize(
        Simulation([EngineConfig(accelerator="nvidia-a10")] * 4, round_robin, external_kv_store=store).run(reqs)
    )
    assert store.blocks and store.lookups
    assert shared.ttft.mean < plain.ttft.mean
    assert shared.prefix_hit_fraction >= plain.prefix_hit_fraction


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0], 99, 1.0), ([1.0, 2.0], 50, 1.5), ([0.0, 10.0, 20.0], 90, 18.0), ([], 50, None)],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    got = percentile(values, q)
    assert (got != got) if expected is None else got == pytest.approx(expected)


class StagedStore(DictStore):
    """The same store, loading in ``load_stages`` layer groups while the forward pass runs."""

    def __init__(self, stages: int, per_block_s: float) -> None:
        super().__init__()
        self.load_stages = stages
        self.per_block_s = per_block_s

    def transfer_seconds(self, n_blocks: int) -> float:
        return self.per_block_s * n_blocks


@pytest.mark.parametrize("per_block_s", [0.0001, 0.01])  # load shorter, then longer, than the compute
def test_layer_wise_loads_overlap_the_forward_pass(per_block_s: float) -> None:
    from runtime_components.common.hashing import block_hashes
    from runtime_components.engine_sim.core import EngineCore

    prompt = list(range(1000, 1000 + 16 * 40 + 5))  # 40 full blocks + 5 tokens
    durations = {}
    for stages in (1, 4):
        config = EngineConfig(accelerator="nvidia-a10", block_size=16)
        store = StagedStore(stages, per_block_s)
        core = EngineCore(config, external_kv_store=store)
        store.blocks.update(block_hashes(prompt, 16, "shared"))
        core.add_request(SimRequest("r", prompt, 1, 0.0, salt="shared"))
        step = core.step(0.0)
        assert step.external_transfer_s == pytest.approx(40 * per_block_s)
        durations[stages] = step.duration_s
    transfer = 40 * per_block_s
    compute = durations[1] - transfer  # serial: T + C
    assert durations[4] == pytest.approx(max(transfer + compute / 4, compute + transfer / 4))
    assert durations[4] < durations[1]
