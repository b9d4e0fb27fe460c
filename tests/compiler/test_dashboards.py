"""The dashboards family: sidecar-labelled ConfigMaps, valid and deterministic dashboards, queries
spelled in each model's dialect, cost from the pools' prices."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from compiler.grafana_schema import dashboard_problems
from compiler.promql import read_query

from .helpers import EXAMPLES, minimal
from .render_helpers import assert_valid, compiled

FULL: dict[str, Any] = {
    "gpuPools": [{"name": "l4", "accelerator": "nvidia-l4", "gpusPerNode": 4, "costPerGpuHour": 0.8},
                 {"name": "a100", "accelerator": "nvidia-a100-80gb", "gpusPerNode": 8, "costPerGpuHour": 3.5}],
    "models": [
        {"name": "small", "source": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "placement": {"pools": ["l4", "a100"]},
         "parallelism": {"tensor": 2}, "replicas": {"min": 1, "max": 4},
         "autoscaling": {"policy": "kpa", "metric": "num_requests_running", "target": 8}},
        {"name": "sg", "source": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct"}, "placement": {"pools": ["a100"]},
         "engine": {"type": "sglang"}},
    ],
    "gateway": {"mode": "standalone"},
    "kvCache": {"replicas": 1},
    "diagnostics": {},
    "observability": {"dashboards": True},
}


def boards(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for o in objects:
        if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            (key, text), = o["data"].items()
            out[key] = json.loads(text)
    return out


def full() -> dict[str, Any]:
    return minimal(**copy.deepcopy(FULL))


def exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def test_off_unless_asked() -> None:
    data = full()
    data["spec"]["observability"] = {}
    assert boards(compiled(data)) == {}


def test_every_dashboard_is_valid_and_labelled_for_the_sidecar() -> None:
    objects = compiled(full())
    found = boards(objects)
    assert sorted(found) == ["aibrix-autoscaler.json", "aibrix-diagnostics.json", "aibrix-engines.json",
                             "aibrix-gateway.json", "aibrix-kv-pool.json", "aibrix-overview.json"]
    for key, board in found.items():
        assert dashboard_problems(board) == [], key
        for expr in exprs(board):
            read_query(expr)  # every query is one the live check can read
    assert len({b["uid"] for b in found.values()}) == len(found)
    assert_valid(objects)


def test_only_the_dashboards_of_what_is_deployed() -> None:
    data = minimal(observability={"dashboards": True})
    assert sorted(boards(compiled(data))) == ["aibrix-engines.json", "aibrix-overview.json"]
    overview = boards(compiled(data))["aibrix-overview.json"]
    assert not any("aibrix_gateway" in e for e in exprs(overview))


def test_deterministic() -> None:
    assert boards(compiled(full())) == boards(compiled(full()))
    first = [o for o in compiled(full()) if o["kind"] == "ConfigMap"]
    assert first == [o for o in compiled(full()) if o["kind"] == "ConfigMap"]


def test_sglang_models_are_queried_in_their_dialect_and_lack_what_it_lacks() -> None:
    engines = boards(compiled(full()))["aibrix-engines.json"]
    by_title = {p["title"]: exprs({"panels": [p]}) for p in engines["panels"]}
    assert any('sglang:num_running_reqs{namespace="llm",model_name="sg"}' in e for e in by_title["Running and waiting requests"])
    assert all("model_name=\"sg\"" not in e for e in by_title["Preemptions per second"])  # vLLM only
    assert not any("vllm:" in e and 'model_name="sg"' in e for p in by_title.values() for e in p)


def test_cost_per_hour_is_pods_per_pool_times_gpus_times_price() -> None:
    overview = boards(compiled(full()))["aibrix-overview.json"]
    cost = next(p for p in overview["panels"] if p["title"] == "GPU cost per hour")
    small = next(t["expr"] for t in cost["targets"] if t["legendFormat"] == "small")
    assert 'pool="a100"})) or vector(0)) * 7 +' in small  # 2 GPUs x 3.5
    assert small.endswith('pool="l4"})) or vector(0)) * 1.6')  # 2 GPUs x 0.8
    assert cost["fieldConfig"]["defaults"]["unit"] == "currencyUSD"


def test_scaler_panels_name_each_target_and_its_target_value() -> None:
    board = boards(compiled(full()))["aibrix-autoscaler.json"]
    text = "\n".join(exprs(board))
    for workload in ("small-l4", "small-a100"):
        assert f'aibrix_scaler_desired_replicas{{namespace="llm",target="{workload}"}}' in text
        assert f'8 * aibrix_scaler_ready_replicas{{namespace="llm",target="{workload}"}}' in text


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda b: b["panels"][1]["gridPos"].update(x=0, y=0), "overlaps panels/0"),
        (lambda b: b["panels"][1].update(id=1), "duplicate ids"),
        (lambda b: b["panels"][0]["gridPos"].update(x=20), "reaches column 32"),
        (lambda b: b["panels"][0]["targets"].append(dict(b["panels"][0]["targets"][0])), "duplicate refIds"),
        (lambda b: b["panels"][0].update(datasource={"type": "prometheus", "uid": "${nope}"}), "not a dashboard variable"),
        (lambda b: b["panels"][0].update(colour="red"), "Additional properties"),
        (lambda b: b.pop("uid"), "'uid' is a required property"),
    ],
)
def test_the_checker_catches_broken_dashboards(mutate: Any, problem: str) -> None:
    board = boards(compiled(full()))["aibrix-gateway.json"]
    mutate(board)
    assert any(problem in p for p in dashboard_problems(board)), dashboard_problems(board)


def test_a_disaggregated_model_gets_the_prefill_decode_panels() -> None:
    data = yaml.safe_load((EXAMPLES / "pd.yaml").read_text())
    data["spec"]["observability"] = {"dashboards": True}
    gateway = next(b for key, b in boards(compiled(data)).items() if "gateway" in key)
    assert not dashboard_problems(gateway)
    joined = "\n".join(exprs(gateway))
    for metric in ("aibrix_gateway_pd_requests_total", "aibrix_gateway_pd_fallbacks_total",
                   "aibrix_gateway_pd_prefill_seconds_bucket"):
        assert metric in joined
    assert "aibrix_gateway_pd_requests_total" not in "\n".join(
        e for b in boards(compiled(full())).values() for e in exprs(b))
