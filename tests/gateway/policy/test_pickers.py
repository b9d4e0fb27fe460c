"""Tables for the pickers: max-score, random, power-of-two."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from runtime_components.gateway.policy.pickers import MaxScorePicker, PowerOfTwoPicker, RandomPicker

from .builders import ep, req


@pytest.mark.parametrize(
    ("scores", "allowed"),
    [
        ([0.1, 0.9, 0.5], {1}),
        ([0.7, 0.7, 0.2], {0, 1}),
        ([0.3], {0}),
        ([0.0, 0.0, 0.0], {0, 1, 2}),
    ],
)
def test_max_score_picks_a_best(scores: list[float], allowed: set[int]) -> None:
    picker = MaxScorePicker(random.Random(3))
    scored = [(ep(i), s) for i, s in enumerate(scores)]
    picks = {picker.pick(req(), scored).address for _ in range(50)}
    assert picks == {f"10.0.0.{i}:8000" for i in allowed}


def test_random_picker_ignores_scores_and_covers_all() -> None:
    picker = RandomPicker(random.Random(5))
    scored = [(ep(i), 1.0 if i == 0 else 0.0) for i in range(4)]
    counts = Counter(picker.pick(req(), scored).address for _ in range(400))
    assert len(counts) == 4 and min(counts.values()) > 50


@pytest.mark.parametrize(
    ("choices", "n", "worst_rank_possible"),
    [
        (2, 4, 2),  # the better of 2 distinct draws from 4 is at worst the 3rd best (rank 2)
        (4, 4, 0),  # sampling everyone is max-score
        (3, 5, 2),
    ],
)
def test_power_of_two_never_picks_the_worst(choices: int, n: int, worst_rank_possible: int) -> None:
    picker = PowerOfTwoPicker(random.Random(7), choices)
    scored = [(ep(i), float(i)) for i in range(n)]  # endpoint i has score i: n-1 is best
    picked_ranks = {n - 1 - int(picker.pick(req(), scored).address.split(".")[3].split(":")[0]) for _ in range(300)}
    assert max(picked_ranks) == worst_rank_possible


def test_power_of_two_rejects_one_choice() -> None:
    with pytest.raises(ValueError, match="at least 2 choices, got 1"):
        PowerOfTwoPicker(random.Random(0), 1)
