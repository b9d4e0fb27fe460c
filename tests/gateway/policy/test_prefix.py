"""prefix-cache-aware: the index, the match score, the load-imbalance guard."""

from __future__ import annotations

import pytest

from runtime_components.common.hashing import block_hashes
from runtime_components.gateway.policy import RequestOutcome
from runtime_components.gateway.policy.prefix import PrefixCacheAwareScorer, PrefixIndex

from .builders import MODEL, ep, req

BLOCK = 4
SHARED = list(range(100, 108))  # two full blocks
PROMPT = SHARED + [1, 2, 3, 4]  # three full blocks
A, B, C = ep(1), ep(2), ep(3)


def scorer(threshold: int = 8, max_blocks: int = 1000) -> PrefixCacheAwareScorer:
    return PrefixCacheAwareScorer(block_size_tokens=BLOCK, max_index_blocks=max_blocks, imbalance_threshold=threshold)


@pytest.mark.parametrize(
    ("history", "prompt", "adapter", "expected"),
    [
        ([], PROMPT, None, {A: 0.0, B: 0.0, C: 0.0}),
        ([(PROMPT, A)], PROMPT, None, {A: 1.0, B: 0.0, C: 0.0}),
        ([(SHARED + [9, 9, 9, 9], B)], PROMPT, None, {A: 0.0, B: 2 / 3, C: 0.0}),
        ([(PROMPT, A), (SHARED, C)], PROMPT + [7] * 3, None, {A: 1.0, B: 0.0, C: 2 / 3}),  # partial block ignored
        ([(PROMPT, A)], PROMPT, "sql", {A: 0.0, B: 0.0, C: 0.0}),  # adapters salt the hashes
        ([([5] + PROMPT[1:], A)], PROMPT, None, {A: 0.0, B: 0.0, C: 0.0}),  # chained: first block differs
        ([(PROMPT, A)], [1, 2, 3], None, {A: 0.0, B: 0.0, C: 0.0}),  # shorter than a block
    ],
)
def test_match_fraction(history: list, prompt: list[int], adapter: str | None, expected: dict) -> None:
    s = scorer()
    for tokens, endpoint in history:
        s.on_routed(req(token_ids=tokens), endpoint)
    scores = s.score(req(token_ids=prompt, adapter=adapter), [A, B, C])
    assert scores == pytest.approx({e.address: v for e, v in expected.items()})


@pytest.mark.parametrize(
    ("threshold", "loads", "expected_a"),
    [
        (8, (0, 0), 1.0),
        (8, (8, 0), 1.0),  # exactly at the threshold: still preferred
        (8, (9, 0), 0.0),  # beyond: the guard yields to load
        (2, (3, 0), 0.0),
        (2, (3, 1), 1.0),
    ],
)
def test_load_imbalance_guard(threshold: int, loads: tuple[int, int], expected_a: float) -> None:
    s = scorer(threshold=threshold)
    s.on_routed(req(token_ids=PROMPT), A)
    a, b = ep(1, running=loads[0]), ep(2, inflight=loads[1])
    assert s.score(req(token_ids=PROMPT), [a, b])[a.address] == expected_a


@pytest.mark.parametrize(
    ("hook", "a_keeps", "b_keeps"),
    [
        (lambda s: s.on_finished(req(token_ids=PROMPT), A, RequestOutcome(success=True)), True, True),
        (lambda s: s.on_finished(req(token_ids=PROMPT), A, RequestOutcome(success=False)), False, True),
        (lambda s: s.on_endpoint_removed(A.address), False, True),
        (lambda s: s.on_endpoint_removed(B.address), True, False),
    ],
)
def test_hooks_update_index(hook, a_keeps: bool, b_keeps: bool) -> None:
    s = scorer()
    s.on_routed(req(token_ids=PROMPT), A)
    s.on_routed(req(token_ids=PROMPT), B)
    hook(s)
    scores = s.score(req(token_ids=PROMPT), [A, B])
    assert (scores[A.address], scores[B.address]) == (float(a_keeps), float(b_keeps))


def test_index_is_bounded_and_evicts_chain_tails_first() -> None:
    index = PrefixIndex(max_entries=4)
    first = block_hashes(list(range(12)), BLOCK, MODEL)  # 3 blocks
    index.add(first, A.address)
    second = block_hashes(list(range(50, 58)), BLOCK, MODEL)  # 2 more blocks -> 5 entries, evict 1
    index.add(second, A.address)
    assert len(index) == 4
    # the oldest entry was first's deepest block: its root and second block still match
    assert index.matched_blocks(first, [A.address]) == {A.address: 2}
    assert index.matched_blocks(second, [A.address]) == {A.address: 2}


def test_index_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries must be >= 1, got 0"):
        PrefixIndex(0)
