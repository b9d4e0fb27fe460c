"""prefix-cache-aware in kv-events mode: decisions are provisional and expire; events stay."""

from __future__ import annotations

import pytest

from runtime_components.gateway.policy.prefix import PrefixCacheAwareScorer, PrefixIndex, use_event_index
from runtime_components.gateway.policy.types import EndpointState, RequestOutcome, RouteRequest

A = EndpointState(address="10.0.0.1:8000", pod="a", model="m")
B = EndpointState(address="10.0.0.2:8000", pod="b", model="m")
a, b = A.address, B.address


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def request() -> RouteRequest:
    return RouteRequest(model="m", adapter=None, token_ids=list(range(64)))


def test_a_decision_counts_until_it_expires():
    clock = Clock()
    scorer = PrefixCacheAwareScorer(16, 1024, 8, index_mode="kv-events", provisional_ttl_s=2.0, clock=clock)
    scorer.on_routed(request(), A)
    assert scorer.score(request(), [A, B]) == {a: 1.0, b: 0.0}
    assert len(scorer.index) == 0  # the event index is the engines' alone
    clock.now = 2.5
    assert scorer.score(request(), [A, B]) == {a: 0.0, b: 0.0}


def test_a_renewed_decision_is_not_expired_by_the_older_one():
    clock = Clock()
    scorer = PrefixCacheAwareScorer(16, 1024, 8, index_mode="kv-events", provisional_ttl_s=2.0, clock=clock)
    scorer.on_routed(request(), A)
    clock.now = 1.5
    scorer.on_routed(request(), A)
    clock.now = 2.5
    assert scorer.score(request(), [A])[a] == 1.0
    clock.now = 3.6
    assert scorer.score(request(), [A])[a] == 0.0


def test_events_fill_the_shared_index_and_the_match_is_the_larger_of_the_two():
    clock = Clock()
    scorer = PrefixCacheAwareScorer(16, 1024, 8, index_mode="kv-events", clock=clock)
    shared = PrefixIndex(1024)
    assert use_event_index([scorer, object()], shared) == 1 and scorer.index is shared
    shared.add(scorer.hashes_of(request())[:2], b)  # the engine reports two of four blocks
    scorer.on_routed(request(), A)
    assert scorer.score(request(), [A, B]) == {a: 1.0, b: 0.5}
    scorer.on_finished(request(), A, RequestOutcome(success=False))
    assert scorer.score(request(), [A, B])[a] == 0.0
    scorer.on_endpoint_removed(b)
    assert scorer.score(request(), [A, B])[b] == 0.0


def test_decisions_mode_is_unchanged_and_takes_no_event_index():
    scorer = PrefixCacheAwareScorer(16, 1024, 8)
    assert scorer.provisional is None and use_event_index([scorer], PrefixIndex(1024)) == 0
    scorer.on_routed(request(), A)
    assert len(scorer.index) == 4


def test_an_unknown_index_mode_is_refused():
    with pytest.raises(ValueError, match='index_mode must be "decisions" or "kv-events"'):
        PrefixCacheAwareScorer(16, 1024, 8, index_mode="events")
