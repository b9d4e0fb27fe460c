"""benchmarks.pd: fleets on the same GPUs, the P/D router's choices, and the quick run's RESULT line."""

from __future__ import annotations

import json
import random

import pytest

from benchmarks import pd
from benchmarks.pd_sim import Fleet, make_requests, run, stats
from runtime_components.engine_sim.config import SimRequest

KEYS = {
    "itl_mean_reduction_vs_aggregated",
    "e2e_p95_reduction_vs_aggregated",
    "ttft_mean_ratio_vs_aggregated",
    "short_prompt_e2e_ratio_vs_aggregated",
    "errors",
    "split",
    "link_gbs",
    "link_quarter",
}


def test_every_fleet_uses_the_same_gpus() -> None:
    fleets = pd.aggregated_variants() + pd.splits()
    assert {f.gpus for f in fleets} == {pd.GPUS}
    assert all(f.split == "aggregated" for f in pd.aggregated_variants())
    for f in pd.splits():
        assert {"prefill", "decode"} == set(f.roles) and f.min_prompt_tokens == pd.MIN_PROMPT_TOKENS
        p, d = f.split.split(":")
        assert int(p[:-1]) + int(d[:-1]) == pd.GPUS
    assert len({(f.split, f.name) for f in pd.splits()}) == len(pd.splits()) >= 4


def _two_engine_pd() -> Fleet:
    return next(f for f in pd.splits() if f.name == "P/D 1xTP4 : 1xTP4")


def test_long_prompts_are_prefilled_and_short_ones_go_straight_to_decode() -> None:
    rng = random.Random(1)
    reqs = make_requests(rng, 2.0, 6, (600, 900), (3, 5), "l") + make_requests(rng, 2.0, 6, (20, 100), (3, 5), "s")
    reqs.sort(key=lambda r: r.arrival_s)
    records = {r.request_id: r for r in run(_two_engine_pd(), reqs, short_on_prefill=False)}
    assert all(r.error is None for r in records.values())
    for rid, r in records.items():
        assert r.engine == 1  # the decode engine answers every request
        assert (r.prefill_engine == 0) == rid.startswith("l")
        assert (r.transfer_s > 0) == rid.startswith("l")


def test_a_short_prompt_runs_on_the_prefill_engine_only_when_it_is_less_loaded() -> None:
    rng = random.Random(2)
    # a burst of short prompts: the decode engine fills up, the idle prefill engine takes some
    shorts = make_requests(rng, float("inf"), 8, (20, 100), (20, 40), "s")
    records = run(_two_engine_pd(), shorts)
    on_prefill = [r for r in records if r.engine == 0]
    assert on_prefill and all(r.prefill_engine is None and r.transfer_s == 0 for r in on_prefill)
    # one at a time, the decode engine is never busier: every one stays there
    spaced = [SimRequest(f"t{i}", list(range(1, 60)), 4, 5.0 * i) for i in range(4)]
    assert all(r.engine == 1 for r in run(_two_engine_pd(), spaced))


def test_stats_pool_every_gap_and_every_first_token() -> None:
    reqs = [SimRequest("l0", list(range(1000)), 4, 0.0), SimRequest("s0", list(range(50)), 3, 0.5)]
    fleet = _two_engine_pd()
    s = stats("x", fleet, run(fleet, reqs))
    assert (s.requests, s.errors, len(s.ttfts), len(s.itls)) == (2, 0, 2, 3 + 2)
    assert s.split == "4P:4D"


def test_a_bad_request_count_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        pd.main(["--quick", "--requests", "5"])
    assert exc.value.code == 2
    assert "--requests must be >= 20, got 5" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_mode_prints_a_table_and_the_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert pd.main(["--quick", "--requests", "40", "--no-plot"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("RESULT ")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert KEYS <= set(result)
    assert result["split"] in {f.split for f in pd.splits()}
    assert result["link_quarter"]["link_gbs"] == pytest.approx(result["link_gbs"] / 4)
    assert isinstance(result["errors"], int) and isinstance(result["targets_missed"], list)
    assert "Long prompts (headline trace):" in out and "<- baseline" in out
