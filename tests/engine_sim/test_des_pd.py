"""Discrete-event simulation with prefill/decode roles: one token on the prefill engine, the
transfer's delay, the decode engine's tokens as the client's, and the errors of a bad setup."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.core import EngineCore
from runtime_components.engine_sim.des import EngineView, Simulation, summarize
from runtime_components.engine_sim.pd import DEFAULT_LINK_GBS, transfer_seconds
from runtime_components.engine_sim.perf import PrefillChunk

CFG = EngineConfig(accelerator="nvidia-h100", model_arch="llama-3-8b")


def first_of(role: str):
    """A router that picks the first engine of ``role`` (or any when none has it)."""

    def route(req: SimRequest, engines: Sequence[EngineView]) -> int:
        return next((i for i, e in enumerate(engines) if e.role == role), 0)

    return route


def _pd(configs: Sequence[EngineConfig] = (CFG, CFG), **kw) -> Simulation:
    return Simulation(configs, first_of("prefill"), roles=["prefill", "decode"], decode_route=first_of("decode"),
                      record_token_times=True, **kw)  # fmt: skip


def test_hand_checked_pair_timeline() -> None:
    """100-token prompt, 3 tokens: prefill (100 tokens, 1 discarded token), transfer, then the
    decode engine recomputes the last prompt token, samples, and decodes twice."""
    m = EngineCore(CFG).model
    o = m.efficiency.request_overhead_s
    sim = _pd()
    [rec] = sim.run([SimRequest("a", list(range(100)), 3, 0.0)])

    prefill_end = o + m.step_seconds([PrefillChunk(100, 0)])
    transfer = transfer_seconds(100, m.arch.kv_bytes_per_token, DEFAULT_LINK_GBS)
    t1 = prefill_end + o + transfer + m.step_seconds([PrefillChunk(1, 99)])  # only the last prompt token
    t2 = t1 + m.step_seconds((), 1, 100)
    t3 = t2 + m.step_seconds((), 1, 101)

    assert rec.error is None and (rec.prefill_engine, rec.engine) == (0, 1)
    assert rec.transfer_s == pytest.approx(transfer) and transfer > 0
    assert rec.token_times_s == pytest.approx((t1, t2, t3))
    assert rec.ttft_s == pytest.approx(t1)  # the decode engine's first token, not the prefill's
    assert rec.e2e_s == pytest.approx(t3)
    assert rec.itl_s == pytest.approx((t2 - t1, t3 - t2))
    assert rec.output_tokens == 3
    prefill, decode = (v.stats() for v in sim.engines)
    assert prefill.generation_tokens == 1 and prefill.request_success == 1  # max_tokens 1 there
    assert decode.generation_tokens == 3
    assert decode.prefix_cache_hits == 0  # the prompt's KV came over the link, not from a cache
    s = summarize([rec])
    assert s.itl.mean == pytest.approx((t3 - t1) / 2) and s.tpot.mean == pytest.approx(s.itl.mean)


def test_a_slower_link_delays_the_first_token_by_the_transfer_difference() -> None:
    req = [SimRequest("a", list(range(2000)), 4, 0.0)]
    fast = _pd().run(req)[0]
    slow = _pd(link_gbs=DEFAULT_LINK_GBS / 4).run(req)[0]
    kv = EngineCore(CFG).model.arch.kv_bytes_per_token
    expected = transfer_seconds(2000, kv, DEFAULT_LINK_GBS / 4) - transfer_seconds(2000, kv, DEFAULT_LINK_GBS)
    assert slow.ttft_s - fast.ttft_s == pytest.approx(expected)  # type: ignore[operator]
    assert slow.itl_s == pytest.approx(fast.itl_s)


def test_the_decode_engine_keeps_stepping_during_a_transfer() -> None:
    # "b" decodes on the decode engine from t=0; "a" is prefilled and transferred meanwhile
    route_calls: list[str] = []

    def route(req: SimRequest, engines: Sequence[EngineView]) -> int:
        route_calls.append(req.request_id)
        return 0 if req.request_id == "a" else 1

    sim = Simulation([CFG, CFG], route, roles=["prefill", "decode"], decode_route=first_of("decode"),
                     record_token_times=True, link_gbs=0.5)  # a slow link: a long transfer window  # fmt: skip
    recs = {r.request_id: r for r in sim.run([SimRequest("a", list(range(4000)), 2, 0.0),
                                              SimRequest("b", list(range(5000, 5050)), 400, 0.0)])}  # fmt: skip
    a, b = recs["a"], recs["b"]
    assert a.error is None and b.error is None and a.prefill_engine == 0 and b.prefill_engine is None
    start = a.arrival_s + a.transfer_s  # a lower bound of when the transfer is under way
    during = [t for t in b.token_times_s if start < t < a.first_token_s]  # type: ignore[operator]
    assert len(during) > 10  # b's tokens kept coming while a's KV was on the wire
    assert max(b.itl_s) < a.transfer_s / 10  # no step waited for the transfer


def test_a_short_prompt_routed_to_a_decode_engine_runs_there_alone() -> None:
    sim = Simulation([CFG, CFG], first_of("decode"), roles=["prefill", "decode"], decode_route=first_of("decode"))
    [rec] = sim.run([SimRequest("s", list(range(50)), 5, 0.0)])
    assert rec.error is None and rec.engine == 1 and rec.prefill_engine is None and rec.transfer_s == 0.0
    assert sim.engines[0].stats().generation_tokens == 0
    assert rec.token_times_s == ()  # not recorded unless asked


def test_heterogeneous_roles_and_many_requests_finish_once() -> None:
    rng = random.Random(4)
    reqs, t = [], 0.0
    for i in range(120):
        t += rng.expovariate(8.0)
        reqs.append(SimRequest(f"r{i}", [rng.randrange(32000) for _ in range(rng.randint(30, 3000))], rng.randint(2, 80), t))
    prefill = EngineConfig(accelerator="nvidia-h100", tensor_parallel=2, max_num_batched_tokens=8192)
    decode = EngineConfig(accelerator="nvidia-a100-80gb")

    def route(req: SimRequest, engines: Sequence[EngineView]) -> int:
        want = "prefill" if len(req.prompt_token_ids) >= 512 else "decode"
        return min((i for i, e in enumerate(engines) if e.role == want), key=lambda i: engines[i].num_waiting)

    def decode_route(req: SimRequest, engines: Sequence[EngineView]) -> int:
        assert all(e.role != "prefill" for e in engines)
        return min(range(len(engines)), key=lambda i: engines[i].num_running + engines[i].num_arriving)

    sim = Simulation([prefill, decode, decode], route, roles=["prefill", "decode", "decode"], decode_route=decode_route,
                     record_token_times=True)  # fmt: skip
    records = sim.run(reqs)
    assert sorted(r.request_id for r in records) == sorted(r.request_id for r in reqs)
    for r in records:
        assert r.error is None and r.engine in (1, 2)
        assert (r.prefill_engine == 0) == (r.prompt_tokens >= 512)
        assert len(r.token_times_s) == r.output_tokens and r.first_token_s == r.token_times_s[0]
    assert sim.engines[0].stats().generation_tokens == sum(r.prompt_tokens >= 512 for r in records)
    assert all(v.num_arriving == 0 for v in sim.engines)


def test_requests_in_transfer_when_the_run_stops_get_an_unfinished_record() -> None:
    sim = _pd(link_gbs=0.01)  # 128 KB/token over 10 MB/s: seconds of transfer
    [rec] = sim.run([SimRequest("a", list(range(500)), 5, 0.0)], until_s=1.0)
    assert rec.error == "unfinished at end of run" and rec.first_token_s is None and rec.engine == 1


def test_decode_route_failures_are_the_requests_errors() -> None:
    def broken(req: SimRequest, engines: Sequence[EngineView]) -> int:
        raise KeyError("no pod")

    sim = Simulation([CFG, CFG], first_of("prefill"), roles=["prefill", "decode"], decode_route=broken)
    [rec] = sim.run([SimRequest("a", list(range(100)), 5, 0.0)])
    assert rec.error is not None and "decode route failed" in rec.error and "no pod" in rec.error
    sim = Simulation([CFG], first_of("prefill"), roles=["prefill"], decode_route=first_of("decode"))
    [rec] = sim.run([SimRequest("a", list(range(100)), 5, 0.0)])
    assert rec.error == "no ready decode engine after the prefill"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"roles": ["prefill", "decode"]}, "needs decode_route"),
        ({"roles": ["decode"]}, "one per engine"),
        ({"roles": ["both", "encode"]}, "not one of"),
        ({"roles": ["both", "both"], "link_gbs": 0.0}, "link_gbs must be > 0"),
    ],
)
def test_bad_setups_are_refused_with_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Simulation([CFG, CFG], first_of("prefill"), **kwargs)
