"""benchmarks.pd: fleets on the same GPUs, the P/D router's choices, and the quick run's RESULT line."""

from __future__ import annotations

import json
import random

import pytest

from benchmarks import pd
from benchmarks.pd_sim import Fleet, make_requests, run, short_on_prefill_default, stats
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


@pytest.mark.parametrize("gpus", [8, 16, pd.GPUS])
def test_every_fleet_uses_the_same_gpus(gpus: int) -> None:
    fleets = pd.aggregated_variants(gpus) + pd.splits(gpus)
    assert {f.gpus for f in fleets} == {gpus}
    assert all(f.split == "aggregated" for f in pd.aggregated_variants(gpus))
    for f in pd.splits(gpus):
        assert {"prefill", "decode"} == set(f.roles) and f.min_prompt_tokens == pd.MIN_PROMPT_TOKENS
        p, d = f.split.split(":")
        assert int(p[:-1]) + int(d[:-1]) == gpus
    assert len({(f.split, f.name) for f in pd.splits(gpus)}) == len(pd.splits(gpus)) >= 4


def test_short_prompts_spill_to_prefill_engines_only_where_those_decode_as_fast() -> None:
    by_name = {f.name: f for f in pd.splits(pd.GPUS)}
    assert short_on_prefill_default(by_name["P/D 4xTP4 : 2xTP4"])
    assert short_on_prefill_default(by_name["P/D 2xTP8 : 2xTP4"])
    assert not short_on_prefill_default(by_name["P/D 8xTP2 : 1xTP8"])
    assert not any(short_on_prefill_default(f) for f in pd.aggregated_variants())


def test_a_split_whose_prefill_pool_cannot_carry_the_rate_is_not_simulated() -> None:
    log: list[str] = []
    burst = make_requests(random.Random(3), float("inf"), 40, (600, 900), (3, 5), "b")
    sweep = make_requests(random.Random(4), 1.0, 20, (600, 900), (3, 5), "s")
    # a bound of 1 req/s per prefill engine: only splits with at least 3 prefill engines are tried
    chosen, _ = pd.choose_split(8, sweep, burst, 2.5, 25.0, {2: 1.0, 4: 1.0, 8: 1.0}, log)
    assert chosen.roles.count("prefill") >= 3
    skipped = [line for line in log if "prefill pool bound" in line]
    assert skipped and all(("P/D 1x" in line or "P/D 2x" in line) for line in skipped)


def _two_engine_pd() -> Fleet:
    return next(f for f in pd.splits(8) if f.name == "P/D 1xTP4 : 1xTP4")


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


@pytest.mark.parametrize(("args", "message"), [
    (["--requests", "5"], "--requests must be >= 20, got 5"),
    (["--gpus", "12"], "--gpus must be a multiple of 8 (whole H200 nodes, TP up to 8), got 12"),
])  # fmt: skip
def test_a_bad_argument_is_one_clear_error(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        pd.main(["--quick", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_mode_prints_a_table_and_the_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert pd.main(["--quick", "--requests", "40", "--no-plot", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("RESULT ")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert KEYS <= set(result)
    assert result["split"] in {f.split for f in pd.splits(8)}
    assert set(result["by_fleet_size"]) == {"8"}
    assert result["link_quarter"]["link_gbs"] == pytest.approx(result["link_gbs"] / 4)
    assert isinstance(result["errors"], int) and isinstance(result["targets_missed"], list)
    assert "Long prompts (headline trace):" in out and "<- baseline" in out
