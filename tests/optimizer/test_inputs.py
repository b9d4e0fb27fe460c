"""Config, profile and workload files: valid ones load, each invalid one gets one clear message."""

from __future__ import annotations

import json

import pytest

from aibrix_spec.components.optimizer import GpuProfile
from runtime_components.optimizer.config import load_config
from runtime_components.optimizer.errors import InputFileError
from runtime_components.optimizer.profiles import load_profile, load_profile_dir, rate_of, save_profile
from runtime_components.optimizer.workload import (
    RateWindow,
    load_workload,
    merge,
    parse_gateway_counters,
)
from tests.optimizer.samples import SLO, config_doc, profile_doc

BAD_CONFIGS = [
    ("unknown-pool", config_doc(models=[{"name": "chat", "pools": ["h100"], "slo": SLO}]),
     "model 'chat' refers to unknown pool(s) h100; known pools: a10, l20"),
    ("duplicate-pool", config_doc(pools=[{"name": "a10", "accelerator": "nvidia-a10", "costPerGpuHour": 1}] * 2),
     "duplicate pool name(s): a10"),
    ("min-above-max", config_doc(models=[{"name": "chat", "pools": ["a10"], "minReplicas": 3, "maxReplicas": 2,
                                          "slo": SLO}]),
     "model 'chat': minReplicas 3 exceeds maxReplicas 2"),
    ("empty-slo", config_doc(models=[{"name": "chat", "pools": ["a10"], "slo": {}}]),
     "models[0].slo\n  an SLO needs at least one of ttftP99Ms or tpotP99Ms"),
    ("two-workload-sources", config_doc(workload={"file": "w.json", "gatewayMetricsUrls": ["http://g/metrics"]}),
     "workload\n  workload needs exactly one of gatewayMetricsUrls or file"),
    ("typo-field", config_doc(intervalSecond=5),
     "intervalSecond\n  unknown field `intervalSecond`\n      1 | ..."),
    ("bad-solver", config_doc(solver="gurobi"), "solver\n  `gurobi` is not allowed here"),
    ("derive-grid-off-log2", config_doc(deriveInputBuckets=[100, 256]),
     "deriveInputBuckets: [100] are not log2 buckets"),
]


def test_config_typo_gets_a_suggestion(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("pools: []\nmodels: []\nintervalSecond: 5\n")
    with pytest.raises(InputFileError) as info:
        load_config(path)
    assert f"{path}:3:1: intervalSecond\n  unknown field `intervalSecond`\n      3 | intervalSecond: 5\n" in str(info.value)
    assert "hint: did you mean `intervalSeconds`?" in str(info.value)


@pytest.mark.parametrize("case_id, doc, message", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_explained(tmp_path, case_id, doc, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputFileError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:1:")  # file:line:col, then the field and the problem
    assert message in str(info.value)


def test_config_paths_resolve_against_the_config_folder(tmp_path):
    path = tmp_path / "cfg" / "config.yaml"
    path.parent.mkdir()
    path.write_text(json.dumps(config_doc()))
    loaded = load_config(path)
    assert loaded.path("profiles") == tmp_path / "cfg" / "profiles"
    assert loaded.path(str(tmp_path / "abs")) == tmp_path / "abs"


BAD_PROFILES = [
    ("off-grid", {"inputBuckets": [300, 2048]}, "inputBuckets: [300] are not log2 buckets"),
    ("unsorted", {"outputBuckets": [512, 64]}, "outputBuckets must be strictly increasing, got [512, 64]"),
    ("short-row", {"maxRps": [[1.0], [1.0, 2.0]]}, "maxRps[0] has 1 values, expected one per output bucket (2)"),
    ("rows", {"maxRps": [[1.0, 2.0]]}, "maxRps has 1 rows, expected one per input bucket (2)"),
    ("negative", {"maxRps": [[1.0, -2.0], [1.0, 2.0]]}, "maxRps[0][1] = -2.0: expected a finite rate >= 0"),
    ("method", {"method": "guess"}, "method\n  `guess` is not allowed here"),
]


@pytest.mark.parametrize("case_id, change, message", BAD_PROFILES, ids=[c[0] for c in BAD_PROFILES])
def test_bad_profile_is_explained(tmp_path, case_id, change, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**profile_doc("nvidia-a10", 1.0), **change}))
    with pytest.raises(InputFileError) as info:
        load_profile(path)
    assert message in str(info.value)


LOOKUPS = [
    # (input tokens bucket, output bucket, expected rate): cells round up to the profiled grid.
    (256, 64, 4.0),
    (16, 16, 4.0),
    (512, 64, 1.0),
    (2048, 512, 0.25),
    (256, 128, 1.0),
    (4096, 64, 0.0),  # beyond the largest input bucket: unservable
    (256, 1024, 0.0),
]


@pytest.mark.parametrize("inp, out, rate", LOOKUPS)
def test_rate_lookup_rounds_up(inp, out, rate):
    assert rate_of(GpuProfile.model_validate(profile_doc("nvidia-a10", 1.0)), inp, out) == rate


def test_profile_round_trip_and_duplicate(tmp_path):
    profile = GpuProfile.model_validate(profile_doc("nvidia-a10", 1.0))
    save_profile(profile, tmp_path / "a.json")
    assert load_profile(tmp_path / "a.json") == profile
    save_profile(profile, tmp_path / "b.json")
    with pytest.raises(InputFileError, match="second profile for model 'chat' on nvidia-a10 x1"):
        load_profile_dir([tmp_path])


@pytest.mark.parametrize("text, message", [
    ("{not json", "w.json:1:10\n  JSON syntax error: expected ',' or '}', but got '<stream end>'"),
    ("[1, 2]", "w.json:1:1\n  expected a mapping of WorkloadFile fields at the top"),
    (json.dumps({"cells": [{"model": "m", "inputBucket": 100, "outputBucket": 16, "rps": 1}]}),
     "w.json:1:42: cells[0].inputBucket\n  100 is not a log2 token bucket"),
    (json.dumps({"cells": [{"model": "m", "inputBucket": 16, "outputBucket": 16, "rps": -1}]}),
     "w.json:1:73: cells[0].rps\n  Input should be greater than or equal to 0"),
    (json.dumps({"cells": [{"model": "m", "inputBucket": 16, "outputBucket": 16, "rps": 1}] * 2}),
     "cells[1] repeats model 'm', inputBucket 16, outputBucket 16"),
])
def test_bad_workload_file_is_explained(tmp_path, text, message):
    path = tmp_path / "w.json"
    path.write_text(text)
    with pytest.raises(InputFileError) as info:
        load_workload(path)
    assert message in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputFileError, match=r"w.json\n  cannot read the file: No such file or directory\n  hint: check the path"):
        load_workload(tmp_path / "w.json")


GATEWAY_TEXT = """\
# HELP aibrix_gateway_request_token_buckets_total Requests by token bucket.
# TYPE aibrix_gateway_request_token_buckets_total counter
aibrix_gateway_request_token_buckets_total{model="chat",input_bucket="512",output_bucket="128"} 30.0
aibrix_gateway_request_token_buckets_total{model="chat",input_bucket="16",output_bucket="16"} 2.0
aibrix_gateway_request_token_buckets_total{model="chat",input_bucket="300",output_bucket="16"} 9.0
# TYPE other_total counter
other_total 5.0
"""


def test_gateway_counters_are_parsed_and_off_grid_labels_skipped():
    assert parse_gateway_counters(GATEWAY_TEXT) == {("chat", 512, 128): 30.0, ("chat", 16, 16): 2.0}


WINDOW_CASES = [
    # (snapshots as (time, {cell: count}), expected rates)
    ("one-snapshot", [(0, {"a": 5})], None),
    ("steady", [(0, {"a": 0}), (10, {"a": 20})], {"a": 2.0}),
    ("new-cell", [(0, {}), (10, {"b": 5})], {"b": 0.5}),
    ("reset", [(0, {"a": 100}), (10, {"a": 10})], {"a": 1.0}),
    # The baseline slides: only the last 10 s (t=10 .. 20) count.
    ("window-slides", [(0, {"a": 0}), (10, {"a": 100}), (20, {"a": 110})], {"a": 1.0}),
    ("idle", [(0, {"a": 7}), (10, {"a": 7})], {}),
]


@pytest.mark.parametrize("case_id, snapshots, expected", WINDOW_CASES, ids=[c[0] for c in WINDOW_CASES])
def test_rate_window(case_id, snapshots, expected):
    window = RateWindow(window_seconds=10)
    for at, counts in snapshots:
        window.observe(at, {(k, 16, 16): v for k, v in counts.items()})
    rates = window.rates()
    assert rates == (None if expected is None else {(k, 16, 16): v for k, v in expected.items()})


def test_merge_sums_gateways():
    assert merge([{("m", 16, 16): 1.0}, {("m", 16, 16): 2.0, ("m", 32, 16): 1.0}]) == {
        ("m", 16, 16): 3.0, ("m", 32, 16): 1.0}


def test_reads_what_the_gateway_writes():
    """The contract with the gateway: its own metrics object's text parses into our cells."""
    metrics_module = pytest.importorskip("runtime_components.gateway.metrics")
    gateway = metrics_module.GatewayMetrics()
    for prompt, completion in ((100, 20), (120, 30), (3000, 64), (5, 1)):
        gateway.observe_usage("chat", prompt, completion)
    assert parse_gateway_counters(gateway.render().decode()) == {
        ("chat", 128, 32): 2.0, ("chat", 4096, 64): 1.0, ("chat", 16, 16): 1.0}


@pytest.mark.parametrize("buckets, index, mode, tokens", [
    ([256, 1024], 0, "upper", 256),
    ([256, 1024], 1, "upper", 1024),
    ([256, 1024], 0, "geometric", 182),  # sqrt(129 * 256): the first bucket covers (128, 256]
    ([256, 1024], 1, "geometric", 513),  # sqrt(257 * 1024): a coarse bucket covers (256, 1024]
    ([16], 0, "geometric", 12),  # sqrt(9 * 16)
])
def test_representative_tokens(buckets, index, mode, tokens):
    from runtime_components.optimizer.profiles import representative_tokens

    assert representative_tokens(buckets, index, mode) == tokens


def test_representative_tokens_rejects_unknown_mode():
    from runtime_components.optimizer.profiles import representative_tokens

    with pytest.raises(ValueError, match="unknown request-token mode 'mean'; expected 'upper' or 'geometric'"):
        representative_tokens([16], 0, "mean")
