"""The router's bounded path (a live EndpointPool) decides as the full scoring does.

Each case replays random traffic (prompts sharing prefixes, sessions, requests starting and
ending, scraped loads changing) against two routers built from the same policy: one given the
live pool, one given the full list. At every step the bounded choice must score, under the
full scoring, as high as the full scoring's own best (ties may go either way).
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from aibrix_spec.routing import RoutingSpec
from runtime_components.gateway.policy import EndpointPool, EndpointState, RouteRequest, build_router
from runtime_components.gateway.policy.load import endpoint_load

POLICIES = [
    "least-request",
    "prefix-cache-aware",
    "prefix-cache-aware:2,least-request",
    "session-affinity",
    "least-request,prefix-cache-aware:3",
]


def _endpoints(n: int) -> list[EndpointState]:
    return [EndpointState(address=f"10.0.{i // 256}.{i % 256}:8000", model="m") for i in range(n)]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("n", [1, 3, 40])
def test_bounded_choice_scores_as_high_as_the_full_scoring(policy: str, n: int) -> None:
    rng = random.Random(f"{policy}-{n}")
    spec = RoutingSpec(policy=policy)
    bounded = build_router(spec, rng=random.Random(1))
    full = build_router(spec, rng=random.Random(1))
    pool = EndpointPool(_endpoints(n))
    prefixes = [[rng.randrange(1000) for _ in range(64)] for _ in range(6)]
    open_requests: list[tuple[RouteRequest, str]] = []
    for step in range(300):
        prefix = rng.choice(prefixes)
        tokens = prefix[: rng.choice([16, 32, 64])] + [rng.randrange(1000) for _ in range(rng.randrange(0, 40))]
        session = f"s{rng.randrange(10)}" if rng.random() < 0.5 else None
        req = RouteRequest(model="m", token_ids=tokens, session_id=session)
        twin = RouteRequest(model="m", token_ids=tokens, session_id=session)
        decision = bounded.decide(req, pool)
        everything = pool.values()
        reference = full.decide(twin, everything)
        best = max(reference.scores.values())
        assert reference.scores[decision.endpoint.address] >= best - 1e-9, (step, decision, reference)
        assert decision.candidates == len(everything)
        # Both routers learn the same thing: the bounded router's choice.
        bounded.on_routed(req, decision.endpoint)
        full.on_routed(twin, decision.endpoint)
        chosen = pool.get(decision.endpoint.address)
        assert chosen is not None
        pool.put(dataclasses.replace(chosen, inflight=chosen.inflight + 1))
        open_requests.append((req, decision.endpoint.address))
        if open_requests and rng.random() < 0.45:
            _, address = open_requests.pop(rng.randrange(len(open_requests)))
            state = pool.get(address)
            assert state is not None
            pool.put(dataclasses.replace(state, inflight=max(0, state.inflight - 1)))
        if rng.random() < 0.05:  # a scrape: engines report their own queues
            for state in pool.values():
                pool.put(dataclasses.replace(state, running=float(rng.randrange(4)), waiting=float(rng.randrange(3))))


def test_least_loaded_matches_a_sort_after_random_changes() -> None:
    rng = random.Random(7)
    pool = EndpointPool(_endpoints(50))
    for _ in range(2000):
        address = f"10.0.0.{rng.randrange(60)}:8000"
        if rng.random() < 0.1:
            pool.remove(address)
        else:
            pool.put(EndpointState(address=address, model="m", inflight=rng.randrange(6)))
        k = rng.randrange(1, 6)
        got = [endpoint_load(e) for e in pool.least_loaded(k)]
        assert got == sorted(endpoint_load(e) for e in pool.values())[:k]
    assert len(pool._heap) <= 4 * len(pool) + 64  # stale entries are compacted away


def test_equal_loads_take_turns() -> None:
    """Among equally loaded endpoints the one whose load changed longest ago comes first (with a
    shortlist of one, as a gateway without fallbacks builds it, it is the one chosen)."""
    pool = EndpointPool(_endpoints(4))
    router = build_router(RoutingSpec(policy="least-request"), rng=random.Random(0), shortlist_size=1)
    served = []
    for _ in range(8):
        chosen = router.decide(RouteRequest(model="m"), pool).endpoint
        served.append(chosen.address)
        pool.put(dataclasses.replace(chosen, inflight=chosen.inflight + 1))
        pool.put(dataclasses.replace(pool.get(chosen.address), inflight=chosen.inflight))  # type: ignore[arg-type]
    assert sorted(served[:4]) == sorted(e.address for e in _endpoints(4))
    assert served[4:] == served[:4]


def test_an_adapter_request_or_a_mixed_pool_is_scored_in_full() -> None:
    router = build_router(RoutingSpec(policy="least-request"), rng=random.Random(0))
    pool = EndpointPool(
        [EndpointState(address="10.0.0.1:8000", model="m", adapters=frozenset({"a"}), inflight=5),
         EndpointState(address="10.0.0.2:8000", model="m", inflight=0),
         EndpointState(address="10.0.0.3:8000", model="other", inflight=0)]
    )
    assert router.decide(RouteRequest(model="m", adapter="a"), pool).endpoint.address == "10.0.0.1:8000"
    assert router.decide(RouteRequest(model="m"), pool).endpoint.address == "10.0.0.2:8000"
