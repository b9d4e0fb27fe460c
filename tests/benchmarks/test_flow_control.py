"""The flow-control benchmark's pooling of seeds."""

from __future__ import annotations

from benchmarks.flow_control import Outcome, completed, lost, merge, p99_ttft
from runtime_components.engine_sim.des import RequestRecord, percentile


def outcome(first_token_s: float) -> Outcome:
    records = [RequestRecord("B-0", 0.0, first_token_s, 2.0, 10, 5, 0)]
    return Outcome(records, {"A-0": 429}, {"B-0": "B", "A-0": "A"}, submitted=2, inversions=1)


def test_merge_keeps_each_runs_requests_apart():
    pooled = merge([outcome(0.1), outcome(0.3)])
    assert completed(pooled, "B") == 2 and lost(pooled) == 0
    assert sorted(pooled.refused) == ["0/A-0", "1/A-0"] and pooled.submitted == 4 and pooled.inversions == 2
    assert p99_ttft(pooled, "B") == percentile([0.1, 0.3], 99)  # both runs' requests are in the pool
