"""The shared percentile helpers: linear interpolation and nearest rank."""

from __future__ import annotations

import math

import pytest

from runtime_components.common.stats import nearest_rank_percentile, percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 3.0], 50, 2.0),
        ([0.0, 1.0, 2.0, 3.0, 4.0], 90, 3.6),
        ([0.0, 100.0], 99, 99.0),
        ([4.0, 0.0, 2.0, 3.0, 1.0], 90, 3.6),  # unsorted input is sorted first
        ([0.0, 10.0, 20.0], 0, 0.0),
        ([0.0, 10.0, 20.0], 100, 20.0),
    ],
)
def test_linear_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_linear_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0, 2.0, 3.0, 4.0], 50, 2.0), ([1.0, 2.0, 3.0, 4.0], 51, 3.0), ([3.0, 1.0, 2.0], 99, 3.0), ([7.0], 0, 7.0)],
)
def test_nearest_rank_percentile(values: list[float], q: float, expected: float) -> None:
    assert nearest_rank_percentile(values, q) == expected


def test_nearest_rank_of_nothing_says_so() -> None:
    with pytest.raises(ValueError, match="percentile of an empty list"):
        nearest_rank_percentile([], 99)
