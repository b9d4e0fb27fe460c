"""Workload traces: byte-identical for a seed, the shapes each generator promises, JSONL errors."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.workloads import (
    KINDS,
    TraceFormatError,
    dumps_jsonl,
    make_trace,
    read_jsonl,
    to_sim_requests,
    write_jsonl,
)
from benchmarks.workloads.arrivals import diurnal, gamma_bursty, poisson
from benchmarks.workloads.generators import zipf_weights
from benchmarks.workloads.text import words
from runtime_components.common.hashing import block_hashes
from runtime_components.common.tokens import count_tokens, tokenize


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arrival", ["poisson", "gamma", "diurnal"])
def test_same_seed_same_bytes_other_seed_other_bytes(kind: str, arrival: str) -> None:
    def text(seed: int) -> str:
        return dumps_jsonl(make_trace(kind=kind, arrival=arrival, n=40, rate=5.0, seed=seed, adapters=["a", "b"]))

    assert text(1) == text(1)
    assert text(1) != text(2)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    trace = make_trace(kind="chat", n=30, rate=5.0, seed=3)
    write_jsonl(trace, tmp_path / "t.jsonl")
    assert read_jsonl(tmp_path / "t.jsonl") == trace


def test_words_have_exactly_the_requested_tokens() -> None:
    rng = random.Random(0)
    assert all(count_tokens(words(n, rng)) == n for n in range(1, 200))


@pytest.mark.parametrize(
    ("times", "rate"),
    [
        (lambda rng: poisson(20.0, rng, n=4000), 20.0),
        (lambda rng: gamma_bursty(20.0, 3.0, rng, n=4000), 20.0),
    ],
)
def test_arrival_processes_hit_their_mean_rate(times, rate: float) -> None:  # type: ignore[no-untyped-def]
    t = times(random.Random(5))
    assert len(t) == 4000 and t == sorted(t)
    assert len(t) / t[-1] == pytest.approx(rate, rel=0.15)


def test_gamma_is_burstier_than_poisson() -> None:
    def cv(t: list[float]) -> float:
        gaps = [b - a for a, b in zip(t, t[1:])]
        return statistics.pstdev(gaps) / statistics.mean(gaps)

    assert cv(gamma_bursty(10.0, 3.0, random.Random(1), n=3000)) > 2 * cv(poisson(10.0, random.Random(1), n=3000))


def test_diurnal_rate_peaks_mid_period() -> None:
    t = diurnal(2.0, 40.0, 100.0, random.Random(2), duration_s=100.0)
    trough = sum(1 for x in t if x < 10 or x > 90)
    peak = sum(1 for x in t if 40 < x < 60)
    assert peak > 3 * trough


def test_chat_turns_share_a_growing_prefix() -> None:
    trace = make_trace(kind="chat", n=200, rate=5.0, seed=4)
    by_session: dict[str, list[str]] = {}
    for r in trace:
        by_session.setdefault(r.session_id or "", []).append(r.prompt)
    multi = [p for p in by_session.values() if len(p) >= 3]
    assert multi
    for prompts in multi:
        for earlier, later in zip(prompts, prompts[1:]):
            assert later.startswith(earlier.removesuffix("assistant:"))
            assert count_tokens(later) > count_tokens(earlier)


def test_bird_sql_prompts_share_a_1000_token_schema_per_database() -> None:
    trace = make_trace(kind="bird-sql", n=100, rate=5.0, seed=6)
    by_db: dict[str, list[list[int]]] = {}
    for r in trace:
        by_db.setdefault(r.user or "", []).append(block_hashes(tokenize(r.prompt), 16, "m"))
    assert len(by_db) > 1
    for hashes in by_db.values():
        shared = min(len(hashes[0]), *(len(h) for h in hashes))
        common = next((i for i in range(shared) if len({h[i] for h in hashes}) > 1), shared)
        assert 55 <= common <= 70  # about 1,000 tokens of shared schema (16-token blocks)


def test_unique_prompts_share_nothing() -> None:
    trace = make_trace(kind="unique", n=50, rate=5.0, seed=7)
    first_blocks = [tuple(tokenize(r.prompt)[:4]) for r in trace]
    assert len(set(first_blocks)) == 50


def test_adapters_follow_zipf_popularity() -> None:
    trace = make_trace(kind="unique", n=3000, rate=50.0, seed=8, adapters=["a", "b", "c", "d"], adapter_zipf=1.0)
    counts = Counter(r.adapter for r in trace)
    assert counts["a"] > counts["b"] > counts["c"] > counts["d"] > 0
    assert all(r.model == r.adapter for r in trace)
    assert counts["a"] / 3000 == pytest.approx(zipf_weights(4, 1.0)[0], abs=0.04)


def test_to_sim_requests_tokenizes() -> None:
    trace = make_trace(kind="unique", n=5, rate=5.0, seed=9)
    sims = to_sim_requests(trace)
    assert [len(s.prompt_token_ids) for s in sims] == [count_tokens(r.prompt) for r in trace]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "t.jsonl:1: not valid JSON"),
        ("[1]", "t.jsonl:1: expected a JSON object, got list"),
        ('{"request_id": "a"}', "missing field(s) arrival_s, max_tokens, model, prompt"),
        ('{"request_id":"a","arrival_s":0,"model":"m","prompt":"p","max_tokens":1,"colour":1}', "unknown field(s) colour"),
        ('{"request_id":"a","arrival_s":0,"model":"m","prompt":"p","max_tokens":0}', "max_tokens must be a positive integer"),
        ('{"request_id":"a","arrival_s":-1,"model":"m","prompt":"p","max_tokens":3}', "arrival_s must be a number >= 0"),
    ],
)
def test_bad_trace_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(TraceFormatError) as info:
        read_jsonl(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "poem"}, "unknown workload kind 'poem'; expected one of chat, bird-sql, unique"),
        ({"arrival": "uniform"}, "unknown arrival process 'uniform'"),
        ({"rate": 0.0}, "arrival rate must be > 0"),
        ({"n": 0}, "n must be >= 1"),
    ],
)
def test_bad_workload_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"kind": "chat", "n": 5, "rate": 1.0, "seed": 0, **kwargs}
    with pytest.raises(ValueError) as info:
        make_trace(**args)  # type: ignore[arg-type]
    assert message in str(info.value)
