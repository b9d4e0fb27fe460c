"""The runner's invariants, checked with one fake plugin that is filter, scorer and picker at once."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest

from aibrix_spec.routing import RoutingSpec
from runtime_components.gateway.policy import (
    EndpointState,
    NoEndpointError,
    PluginContractError,
    RequestOutcome,
    RouteRequest,
    build_router,
)
from runtime_components.gateway.policy.pickers import MaxScorePicker
from runtime_components.gateway.policy.runner import Profile, Router, clamp_score

from .builders import MODEL, ep, req


class Fake:
    """Filter + scorer + picker + stateful hooks, each behaviour set by the test."""

    name = "fake"

    def __init__(self, keep=None, scores: Mapping[str, float] | None = None, choose=None) -> None:
        self.keep = keep
        self.scores = scores or {}
        self.choose = choose
        self.events: list[tuple[str, str]] = []

    def filter(self, r: RouteRequest, endpoints: Sequence[EndpointState]) -> list[EndpointState]:
        return list(endpoints) if self.keep is None else self.keep(endpoints)

    def why_empty(self, r: RouteRequest) -> str:
        return "the fake kept nothing"

    def score(self, r: RouteRequest, endpoints: Sequence[EndpointState]) -> Mapping[str, float]:
        return self.scores

    def pick(self, r: RouteRequest, scored: Sequence[tuple[EndpointState, float]]) -> EndpointState:
        return self.choose(scored) if self.choose else scored[0][0]

    def on_routed(self, r: RouteRequest, endpoint: EndpointState) -> None:
        self.events.append(("routed", endpoint.address))

    def on_finished(self, r: RouteRequest, endpoint: EndpointState, outcome: RequestOutcome) -> None:
        self.events.append(("finished", endpoint.address))

    def on_endpoint_removed(self, address: str) -> None:
        self.events.append(("removed", address))


A, B, C = ep(1), ep(2), ep(3)


@pytest.mark.parametrize(
    ("value", "clamped"),
    [(-0.5, 0.0), (0.0, 0.0), (0.25, 0.25), (1.0, 1.0), (7.0, 1.0), (float("nan"), 0.0), (float("inf"), 1.0)],
)
def test_clamp_score(value: float, clamped: float) -> None:
    assert clamp_score(value) == clamped


@pytest.mark.parametrize(
    ("scores", "weight", "expected"),
    [
        ({A.address: 0.5, B.address: 2.0}, 1.0, {A.address: 0.5, B.address: 1.0, C.address: 0.0}),  # clamp, missing -> 0
        ({A.address: -3.0, C.address: float("nan")}, 2.0, {A.address: 0.0, B.address: 0.0, C.address: 0.0}),
        ({A.address: 0.25, B.address: 1.0, C.address: 0.5}, 3.0, {A.address: 0.75, B.address: 3.0, C.address: 1.5}),
    ],
)
def test_scores_are_clamped_and_weighted(scores: dict, weight: float, expected: dict) -> None:
    fake = Fake(scores=scores)
    router = Router(Profile(name="t", filters=(), scorers=((fake, weight),), picker=MaxScorePicker(random.Random(0))))
    decision = router.decide(req(), [A, B, C])
    assert dict(decision.scores) == pytest.approx(expected)
    assert decision.candidates == 3


def test_weighted_sum_of_two_scorers() -> None:
    first = Fake(scores={A.address: 1.0, B.address: 0.0})
    second = Fake(scores={A.address: 0.0, B.address: 1.0})
    router = Router(Profile(name="t", filters=(), scorers=((first, 1.0), (second, 3.0)), picker=MaxScorePicker(random.Random(0))))
    assert router.pick(req(), [A, B]) == B


@pytest.mark.parametrize(
    ("endpoints", "keep", "message"),
    [
        ([], None, f'no ready endpoint serves model "{MODEL}"'),
        ([A, B], lambda eps: [], 'filter "fake" left none of 2 endpoint(s): the fake kept nothing'),
    ],
)
def test_no_endpoint_errors_say_why(endpoints: list, keep, message: str) -> None:
    router = Router(Profile(name="t", filters=(Fake(keep=keep),), scorers=(), picker=Fake()))
    with pytest.raises(NoEndpointError) as info:
        router.pick(req(), endpoints)
    assert info.value.reason == message


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("filter", 'plugin "fake" returned endpoint(s) it was not given: 10.0.0.3:8000'),
        ("picker", 'plugin "fake" returned endpoint(s) it was not given: 10.0.0.3:8000'),
    ],
)
def test_plugins_returning_strangers_are_bugs(role: str, message: str) -> None:
    stray = Fake(keep=lambda eps: [C], choose=lambda scored: C)
    honest = Fake()
    profile = (
        Profile(name="t", filters=(stray,), scorers=(), picker=honest)
        if role == "filter"
        else Profile(name="t", filters=(), scorers=(), picker=stray)
    )
    with pytest.raises(PluginContractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Router(profile).pick(req(), [A, B])


def test_hooks_reach_each_stateful_plugin_once() -> None:
    fake = Fake()
    router = Router(Profile(name="t", filters=(fake,), scorers=((fake, 1.0),), picker=fake))
    router.on_routed(req(), A)
    router.on_finished(req(), A, RequestOutcome(success=True))
    router.on_endpoint_removed(B.address)
    assert fake.events == [("routed", A.address), ("finished", A.address), ("removed", B.address)]


@pytest.mark.parametrize(
    ("policy", "expected_match"),
    [("least-request", None), ("prefix-cache-aware", 1.0), ("prefix-cache-aware:1,least-kv-cache", 1.0)],
)
def test_decision_reports_prefix_match(policy: str, expected_match: float | None) -> None:
    router = build_router(RoutingSpec(policy=policy), rng=random.Random(0))
    prompt = list(range(64))
    first = req(token_ids=prompt)
    router.on_routed(first, router.pick(first, [A, B]))
    decision = router.decide(req(token_ids=prompt), [A, B])
    assert decision.prefix_match == expected_match
    assert decision.policy == policy


def test_adapter_requests_never_reach_pods_without_the_adapter() -> None:
    holder = ep(1, adapters=frozenset({"sql"}), running=50)
    idle = ep(2, running=0, max_loras=4)
    for policy in ("random", "least-request", "power-of-two", "session-affinity"):
        router = build_router(RoutingSpec(policy=policy), rng=random.Random(1))
        picks = {router.pick(req(adapter="sql"), [holder, idle]).address for _ in range(20)}
        assert picks == {holder.address}, policy
