"""Pickers: max-score, random, power-of-two.

Where it sits: the last step of a ``Profile`` (see ``runner``). Every picker draws its
randomness from the ``random.Random`` it was built with, so a seeded router is repeatable.

- max-score: the highest total; ties (within 1e-9) broken uniformly at random.
- random: uniform over the candidates, ignoring scores (the baseline).
- power-of-two: sample ``choices`` distinct candidates uniformly, keep the highest total
  (ties -> the first sampled). With least-request this is the classic "power of d choices":
  nearly least-request's balance without every request piling onto the single idlest pod.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .types import EndpointState, RouteRequest

__all__ = ["MaxScorePicker", "PowerOfTwoPicker", "RandomPicker"]

_TIE = 1e-9


class MaxScorePicker:
    """Picks the highest-scoring endpoint; ties broken at random."""

    name = "max-score"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, req: RouteRequest, scored: Sequence[tuple[EndpointState, float]]) -> EndpointState:
        best = max(score for _, score in scored)
        tied = [e for e, score in scored if score >= best - _TIE]
        return tied[0] if len(tied) == 1 else self._rng.choice(tied)


class RandomPicker:
    """Picks uniformly at random, ignoring scores."""

    name = "random"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, req: RouteRequest, scored: Sequence[tuple[EndpointState, float]]) -> EndpointState:
        return self._rng.choice(scored)[0]


class PowerOfTwoPicker:
    """Samples ``choices`` candidates at random and keeps the best-scoring one."""

    name = "power-of-two"

    def __init__(self, rng: random.Random, choices: int) -> None:
        if choices < 2:
            raise ValueError(f"power-of-two needs at least 2 choices, got {choices}")
        self._rng = rng
        self._choices = choices

    def pick(self, req: RouteRequest, scored: Sequence[tuple[EndpointState, float]]) -> EndpointState:
        sample = self._rng.sample(list(scored), min(self._choices, len(scored)))
        best_endpoint, best_score = sample[0]
        for endpoint, score in sample[1:]:
            if score > best_score + _TIE:
                best_endpoint, best_score = endpoint, score
        return best_endpoint
