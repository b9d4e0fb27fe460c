"""session-affinity: a session sticks to its endpoint until it fails or leaves."""

from __future__ import annotations

import pytest

from runtime_components.gateway.policy import RequestOutcome
from runtime_components.gateway.policy.session import SessionAffinityScorer

from .builders import ep, req

A, B, C = ep(1), ep(2), ep(3)


def bound_scorer() -> SessionAffinityScorer:
    scorer = SessionAffinityScorer("x-session-id", max_sessions=10)
    scorer.on_routed(req(session_id="s1"), B)
    return scorer


@pytest.mark.parametrize(
    ("request_fields", "expected"),
    [
        ({"session_id": "s1"}, {A.address: 0.0, B.address: 1.0, C.address: 0.0}),
        ({"headers": {"x-session-id": "s1"}}, {A.address: 0.0, B.address: 1.0, C.address: 0.0}),
        ({"session_id": "s2"}, {A.address: 0.0, B.address: 0.0, C.address: 0.0}),
        ({}, {A.address: 0.0, B.address: 0.0, C.address: 0.0}),
        ({"headers": {"x-other": "s1"}}, {A.address: 0.0, B.address: 0.0, C.address: 0.0}),
    ],
)
def test_session_scores(request_fields: dict, expected: dict) -> None:
    assert bound_scorer().score(req(**request_fields), [A, B, C]) == expected


@pytest.mark.parametrize(
    ("event", "still_bound"),
    [
        (lambda s: s.on_finished(req(session_id="s1"), B, RequestOutcome(success=True)), True),
        (lambda s: s.on_finished(req(session_id="s1"), B, RequestOutcome(success=False)), False),
        (lambda s: s.on_finished(req(session_id="s1"), A, RequestOutcome(success=False)), True),
        (lambda s: s.on_endpoint_removed(B.address), False),
        (lambda s: s.on_endpoint_removed(A.address), True),
        (lambda s: s.on_routed(req(session_id="s1"), C), False),  # rebound to C
    ],
)
def test_session_binding_lifecycle(event, still_bound: bool) -> None:
    scorer = bound_scorer()
    event(scorer)
    assert scorer.score(req(session_id="s1"), [A, B, C])[B.address] == (1.0 if still_bound else 0.0)


def test_session_table_is_bounded_lru() -> None:
    scorer = SessionAffinityScorer("x-session-id", max_sessions=3)
    for i in range(5):
        scorer.on_routed(req(session_id=f"s{i}"), A)
    assert len(scorer) == 3
    assert scorer.score(req(session_id="s0"), [A])[A.address] == 0.0
    assert scorer.score(req(session_id="s4"), [A])[A.address] == 1.0
