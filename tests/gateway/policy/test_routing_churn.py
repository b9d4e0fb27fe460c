"""benchmarks.routing_churn: both index modes run the same trace, repeatably; kv-events is fed by the DES hook."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.routing_churn import ChurnScenario, churn_requests, run_churn, run_mode

SMALL = replace(ChurnScenario(), engines=3, databases=24, rate=6.0, requests_quick=300)


def test_both_modes_serve_every_request_and_report_the_ratio() -> None:
    out = run_churn(quick=True, seed=2, scenario=SMALL)
    for mode, summary in out["summaries"].items():  # type: ignore[union-attr]
        assert summary.errors == 0, mode
    ratio = out["kv_events_mean_ttft_ratio_vs_decisions"]
    assert ratio == pytest.approx(out["mean_ttft_s"]["kv-events"] / out["mean_ttft_s"]["decisions"], rel=1e-3)  # type: ignore[index]
    assert run_churn(quick=True, seed=2, scenario=SMALL)["mean_ttft_s"] == out["mean_ttft_s"]  # deterministic


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of decisions, kv-events"):
        run_mode("events", churn_requests(SMALL, 10, 1), SMALL, seed=1)
