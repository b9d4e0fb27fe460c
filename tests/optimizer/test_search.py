"""The max-rate search: brackets, bisects, stays conservative and bounded."""

from __future__ import annotations

import pytest

from runtime_components.optimizer.search import RateSearch, find_max_rate, percentile

CASES = [
    # (true max rate, start, tolerance)
    (0.5, 1.0, 0.05),
    (1.0, 1.0, 0.05),
    (3.7, 1.0, 0.05),
    (100.0, 1.0, 0.1),
    (0.02, 1.0, 0.1),
    (7.0, 50.0, 0.02),
]


@pytest.mark.parametrize("true_rate, start, tol", CASES)
def test_finds_rate_within_tolerance_and_never_above(true_rate, start, tol):
    search = find_max_rate(lambda r: r <= true_rate, start=start, rel_tol=tol)
    assert true_rate / (1 + tol) <= search.max_rate <= true_rate
    assert all(passed == (rate <= true_rate) for rate, passed in search.probes)


def test_unservable_when_even_a_trickle_fails():
    search = find_max_rate(lambda r: False, start=1.0)
    assert search.max_rate == 0.0
    assert len(search.probes) == 9  # start plus eight halvings


def test_probe_budget_is_respected():
    search = find_max_rate(lambda r: True, start=1.0, max_probes=5)
    assert len(search.probes) == 5 and search.max_rate == 16.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="start and rel_tol must be > 0, got start=0, rel_tol=0.1"):
        RateSearch(start=0)


@pytest.mark.parametrize("values, q, expected", [
    ([1.0], 99, 1.0),
    ([float(i) for i in range(1, 101)], 99, 99.0),
    ([float(i) for i in range(1, 101)], 50, 50.0),
    ([3.0, 1.0, 2.0], 100, 3.0),
])
def test_percentile_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected
