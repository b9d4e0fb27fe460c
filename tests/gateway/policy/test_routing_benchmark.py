"""benchmarks.routing: the simulated gateway models in-flight counts and stale metrics, and runs are repeatable."""

from __future__ import annotations

import random

import pytest

from aibrix_spec.routing import RoutingSpec
from benchmarks.routing import Workload, make_requests, parse_args, run_policy
from benchmarks.routing_sim import MODEL, SimGateway
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.des import Simulation
from runtime_components.gateway.policy import build_router

CONFIG = EngineConfig(accelerator="nvidia-a10", model_arch=MODEL)


def small_trace(kind: str, n: int = 240, rate: float = 30.0):
    return make_requests(Workload(kind, n, n, rate), n, seed=3, databases=16)


def test_router_sees_its_own_inflight_requests_and_stale_metrics() -> None:
    requests = small_trace("shared-prefix")
    gateway = SimGateway(build_router(RoutingSpec(policy="least-request"), rng=random.Random(0)), scrape_interval_s=1000.0)
    routed: dict[int, int] = {}
    mismatches: list[str] = []

    def route(req, views):
        position = gateway.route(req, views)
        routed[views[position].index] = routed.get(views[position].index, 0) + 1
        # The simulator turns a routing exception into an error record, so collect, don't assert.
        finished: dict[int, int] = {}
        for record in sim.records:
            finished[record.engine] = finished.get(record.engine, 0) + 1
        for view in views:
            state = gateway.endpoint_state(view)
            truth = routed.get(view.index, 0) - finished.get(view.index, 0)
            # the only scrape was at t=0: metrics say idle, the gateway's own count says otherwise
            if (state.running, state.waiting, state.inflight) != (0.0, 0.0, truth):
                mismatches.append(f"{req.request_id} engine {view.index}: {state} vs in flight {truth}")
        return position

    sim = Simulation([CONFIG] * 4, route)
    gateway.attach(sim, max(r.arrival_s for r in requests))
    records = sim.run(requests)
    assert [r.error for r in records if r.error] == []
    assert mismatches == []
    assert sum(routed.values()) == len(requests)
    assert max(routed.values()) - min(routed.values()) <= len(requests) // 4  # in-flight counts spread the load


def test_prefix_policy_beats_random_on_shared_prefixes() -> None:
    requests = small_trace("shared-prefix")
    runs = {
        policy: run_policy(policy, requests, CONFIG, engines=4, seed=1, scrape_interval_s=0.5, warmup_s=0.0)
        for policy in ("random", "prefix-cache-aware")
    }
    assert runs["prefix-cache-aware"].prefix_hit_fraction > runs["random"].prefix_hit_fraction + 0.1
    assert runs["prefix-cache-aware"].ttft.mean < runs["random"].ttft.mean


def test_prefix_policy_is_least_request_on_unique_prompts() -> None:
    requests = small_trace("unique", n=160, rate=12.0)
    runs = [
        run_policy(policy, requests, CONFIG, engines=4, seed=2, scrape_interval_s=0.5, warmup_s=0.0)
        for policy in ("prefix-cache-aware", "least-request")
    ]
    assert runs[0] == runs[1]


def test_runs_are_repeatable() -> None:
    requests = small_trace("chat", n=120, rate=8.0)
    first, second = (
        run_policy("session-affinity", requests, CONFIG, engines=4, seed=5, scrape_interval_s=0.5, warmup_s=2.0)
        for _ in range(2)
    )
    assert first == second and first.completed > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engines", "0"], "--engines must be between 1 and 256, got 0"),
        (["--accelerator", "tpu"], "--accelerator: unknown GPU 'tpu'; expected one of:"),
        (["--policies", "random,fastest,prefix-cache-aware,least-request"], "--policies: 'fastest' is not a valid policy"),
        (["--policies", "random,least-request"], "--policies must include prefix-cache-aware"),
        (["--warmup", "0.95"], "--warmup must be a fraction in [0, 0.9), got 0.95"),
        (["--scrape-interval", "0"], "--scrape-interval must be in (0, 60] seconds, got 0.0"),
        (["--databases", "0"], "--databases must be at least 1, got 0"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
