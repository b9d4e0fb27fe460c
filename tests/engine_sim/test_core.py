"""EngineCore: prefix caching, queueing on a full KV cache, preemption, adapters, metrics."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from runtime_components.engine_sim.config import (
    AdapterError,
    EngineConfig,
    RequestRejected,
    SimRequest,
    UnknownAdapterError,
)
from runtime_components.engine_sim.core import EngineCore


def _run(core: EngineCore, now: float = 0.0, max_steps: int = 10_000) -> tuple[float, dict[str, float], dict[str, float]]:
    """Step until idle; return the end time, first-token and finish times per request."""
    first: dict[str, float] = {}
    finish: dict[str, float] = {}
    for _ in range(max_steps):
        if not core.has_work():
            return now, first, finish
        result = core.step(now)
        now = result.end_s
        for ev in result.events:
            if ev.index == 0:
                first[ev.request_id] = now
            if ev.finished:
                finish[ev.request_id] = now
    raise AssertionError("engine did not drain")


def _prompt(n: int, start: int = 0) -> list[int]:
    return [(start + i) % 32000 for i in range(n)]


def test_a_repeated_prefix_lowers_ttft_and_raises_hits() -> None:
    core = EngineCore(EngineConfig())
    shared = _prompt(2000)
    core.add_request(SimRequest("cold", shared + _prompt(40, 7), 4, 0.0))
    t, first, _ = _run(core)
    cold_ttft = first["cold"]
    before = core.stats()
    core.add_request(SimRequest("warm", shared + _prompt(40, 9), 4, t))
    _, first, _ = _run(core, t)
    after = core.stats()
    assert first["warm"] - t < cold_ttft / 3
    assert after.prefix_cache_hits - before.prefix_cache_hits == 2000
    assert after.prefix_cache_queries - before.prefix_cache_queries == 2040


@pytest.mark.parametrize(
    ("enable_prefix_caching", "other_adapter_salt", "expected_hits"),
    [(True, False, 992), (False, False, 0), (True, True, 0)],
)
def test_prefix_hits_need_caching_and_the_same_salt(
    enable_prefix_caching: bool, other_adapter_salt: bool, expected_hits: int
) -> None:
    core = EngineCore(EngineConfig(enable_prefix_caching=enable_prefix_caching))
    core.add_request(SimRequest("a", _prompt(1000), 2, 0.0))
    t, _, _ = _run(core)
    salt = "other-model" if other_adapter_salt else ""
    core.add_request(SimRequest("b", _prompt(1000), 2, t, salt=salt))
    _run(core, t)
    assert core.stats().prefix_cache_hits == expected_hits


def test_a_full_kv_cache_makes_requests_wait() -> None:
    core = EngineCore(EngineConfig(num_gpu_blocks=40))  # 640 tokens of KV
    for i in range(3):
        core.add_request(SimRequest(f"r{i}", _prompt(300, i * 1000), 8, 0.0))
    core.step(0.0)
    s = core.stats()
    assert (s.num_running, s.num_waiting) == (2, 1)
    assert s.kv_cache_usage == pytest.approx(38 / 40)
    _, first, finish = _run(core, 0.1)
    assert set(finish) == {"r0", "r1", "r2"}
    assert first["r2"] > finish["r0"]  # r2 started only after blocks were freed


def test_decode_out_of_blocks_preempts_the_latest_request_and_recomputes() -> None:
    core = EngineCore(EngineConfig(num_gpu_blocks=20, max_model_len=512))  # 320 tokens
    core.add_request(SimRequest("old", _prompt(150), 100, 0.0))
    core.add_request(SimRequest("new", _prompt(150, 500), 100, 0.0))
    _, _, finish = _run(core)
    assert set(finish) == {"old", "new"}
    assert core.stats().num_preemptions >= 1
    assert finish["old"] < finish["new"]


def test_chunked_prefill_respects_the_token_budget() -> None:
    core = EngineCore(EngineConfig(max_num_batched_tokens=256))
    core.add_request(SimRequest("long", _prompt(1000), 2, 0.0))
    results = [core.step(0.0) for _ in range(4)]
    assert [r.prefill_tokens for r in results] == [256, 256, 256, 232]
    assert [len(r.events) for r in results] == [0, 0, 0, 1]


def test_max_num_seqs_caps_the_batch() -> None:
    core = EngineCore(EngineConfig(max_num_seqs=3))
    for i in range(5):
        core.add_request(SimRequest(f"r{i}", _prompt(10, i * 100), 5, 0.0))
    core.step(0.0)
    assert (core.num_running, core.num_waiting) == (3, 2)


def test_counters_and_histograms_move() -> None:
    core = EngineCore(EngineConfig())
    core.add_request(SimRequest("a", _prompt(100), 5, 0.0))
    core.add_request(SimRequest("b", _prompt(200, 300), 1, 0.0))
    _run(core)
    s = core.stats()
    assert (s.prompt_tokens, s.generation_tokens, s.request_success) == (300, 6, 2)
    assert s.histograms["time_to_first_token_seconds"].count == 2
    assert s.histograms["inter_token_latency_seconds"].count == 4
    assert s.histograms["e2e_request_latency_seconds"].count == 2
    assert s.histograms["request_time_per_output_token_seconds"].count == 1
    assert (s.num_running, s.num_waiting, s.kv_cache_usage) == (0, 0, 0.0)


def test_same_calls_give_the_same_results() -> None:
    def trace() -> list[tuple[float, int, Sequence[str]]]:
        core = EngineCore(EngineConfig(num_gpu_blocks=64))
        for i in range(6):
            core.add_request(SimRequest(f"r{i}", _prompt(100 + 37 * i, i), 20, 0.0))
        out = []
        now = 0.0
        while core.has_work():
            r = core.step(now)
            now = r.end_s
            out.append((r.duration_s, r.prefill_tokens, r.preempted))
        return out

    assert trace() == trace()


def test_slowdown_factor_scales_step_time() -> None:
    base, slow = EngineCore(EngineConfig()), EngineCore(EngineConfig())
    slow.slowdown_factor = 3.0
    for core in (base, slow):
        core.add_request(SimRequest("a", _prompt(500), 1, 0.0))
    assert slow.step(0.0).duration_s == pytest.approx(3 * base.step(0.0).duration_s)


def test_adapters_load_unload_and_respect_the_limit() -> None:
    core = EngineCore(EngineConfig(max_loras=2))
    core.load_adapter("sql")
    core.load_adapter("chat")
    with pytest.raises(AdapterError, match=r"max_loras=2 already loaded \(sql, chat\); hint: unload one first"):
        core.load_adapter("code")
    with pytest.raises(AdapterError, match="already been loaded"):
        core.load_adapter("sql")
    core.add_request(SimRequest("a", _prompt(10), 2, 0.0, adapter="sql"))
    core.step(0.0)
    assert core.stats().running_adapters == ("sql",)
    core.unload_adapter("chat")
    core.load_adapter("code")
    assert core.adapters == ("sql", "code")
    with pytest.raises(UnknownAdapterError, match="`chat` does not exist"):
        core.add_request(SimRequest("b", _prompt(10), 2, 0.0, adapter="chat"))
    with pytest.raises(UnknownAdapterError, match="'chat' cannot be found"):
        core.unload_adapter("chat")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (SimRequest("x", [], 5, 0.0), "the prompt is empty"),
        (SimRequest("x", [1, 2], 0, 0.0), "max_tokens must be >= 1, got 0"),
        (SimRequest("x", [1] * 8000, 500, 0.0), "maximum context length is 8192 tokens; the request has 8000"),
    ],
)
def test_bad_requests_are_rejected_with_a_reason(request_: SimRequest, message: str) -> None:
    with pytest.raises(RequestRejected, match=message):
        EngineCore(EngineConfig()).add_request(request_)


def test_requests_larger_than_the_whole_cache_are_rejected() -> None:
    with pytest.raises(RequestRejected, match=r"more KV blocks than the engine has \(4 blocks of 16 tokens\)"):
        EngineCore(EngineConfig(num_gpu_blocks=4)).add_request(SimRequest("x", [1] * 100, 5, 0.0))


def test_abort_frees_blocks() -> None:
    core = EngineCore(EngineConfig(num_gpu_blocks=100))
    core.add_request(SimRequest("a", _prompt(500), 50, 0.0))
    core.step(0.0)
    assert core.kv_cache_usage > 0
    assert core.abort_request("a") and not core.abort_request("a")
    assert core.kv_cache_usage == 0.0 and not core.has_work()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accelerator": "tpu-v5"}, "unknown accelerator 'tpu-v5'; expected one of"),
        ({"model_arch": "gpt-5"}, "unknown model 'gpt-5'"),
        ({"max_num_seqs": 0}, "EngineConfig.max_num_seqs must be >= 1, got 0"),
        ({"num_gpu_blocks": 0}, "num_gpu_blocks must be >= 1 when set"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EngineConfig(**kwargs)  # type: ignore[arg-type]


def _finish_order(policy: str, requests: tuple[tuple[str, int], ...]) -> list[str]:
    """One sequence at a time: the order requests finish is the order they were admitted."""
    from runtime_components.engine_sim.config import EngineConfig, SimRequest
    from runtime_components.engine_sim.core import EngineCore

    core = EngineCore(EngineConfig(max_num_seqs=1, scheduling_policy=policy))
    for rid, priority in requests:
        core.add_request(SimRequest(rid, list(range(1, 40)), 1, 0.0, priority=priority))
    order, now = [], 0.0
    while core.has_work():
        step = core.step(now)
        order += [e.request_id for e in step.events if e.finished]
        now = step.end_s
    return order


def test_priority_scheduling_admits_the_lowest_priority_value_first() -> None:
    # vLLM: (priority, arrival); fcfs keeps arrival order whatever the priority
    assert _finish_order("priority", (("a", 1), ("b", 1), ("c", 0))) == ["c", "a", "b"]
    assert _finish_order("fcfs", (("a", 1), ("b", 1), ("c", 0))) == ["a", "b", "c"]


def test_priority_preemption_takes_the_largest_priority_value_even_if_scheduled_earlier() -> None:
    from runtime_components.engine_sim.config import EngineConfig, SimRequest
    from runtime_components.engine_sim.core import EngineCore

    # Two requests fill the cache while decoding; the one with the larger value is preempted,
    # even though it runs first in the running list.
    core = EngineCore(EngineConfig(num_gpu_blocks=6, block_size=16, scheduling_policy="priority",
                                   enable_prefix_caching=False))
    core.add_request(SimRequest("low", list(range(1, 41)), 40, 0.0, priority=5))
    core.add_request(SimRequest("high", list(range(101, 141)), 40, 0.001, priority=0))
    now, preempted = 0.0, []
    while core.has_work() and not preempted:
        step = core.step(now)
        preempted += list(step.preempted)
        now = step.end_s
    assert preempted == ["low"]
