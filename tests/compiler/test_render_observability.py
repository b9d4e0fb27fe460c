"""The observability family: a monitor for every scrapable Service or workload, opt-out, SLO alerts."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import minimal
from .render_helpers import assert_valid, compiled, of_kind

MONITOR_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


def obs_stack(observability: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    data = minimal(**spec, **({"observability": observability} if observability is not None else {}))
    data["spec"]["models"][0]["slo"] = {"ttftP99Ms": 500, "tpotP99Ms": 40}
    return data


def monitors(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in MONITOR_KINDS)


@pytest.mark.parametrize(
    "observability, expected",
    [
        (None, []),
        ({"enabled": False}, []),
        ({}, [("ServiceMonitor", "aibrix-diag"), ("ServiceMonitor", "small")]),
        ({"serviceMonitors": False}, []),
        ({"serviceMonitors": False, "prometheusRules": True}, [("PrometheusRule", "aibrix-alerts")]),
        (
            {"prometheusRules": True},
            [("PrometheusRule", "aibrix-alerts"), ("ServiceMonitor", "aibrix-diag"), ("ServiceMonitor", "small")],
        ),
    ],
)
def test_opt_out_per_section(observability: dict[str, Any] | None, expected: list[tuple[str, str]]) -> None:
    objects = compiled(obs_stack(observability, diagnostics={}))
    assert monitors(objects) == expected
    if expected:
        assert_valid(objects)


def test_each_service_monitor_selects_exactly_its_service() -> None:
    objects = compiled(obs_stack({"scrapeInterval": "15s"}, diagnostics={}))
    services = of_kind(objects, "Service")
    for name, monitor in of_kind(objects, "ServiceMonitor").items():
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s, body in services.items() if selector.items() <= body["metadata"]["labels"].items()]
        assert selected == [name]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["llm"]}
    ports = {name: m["spec"]["endpoints"][0]["port"] for name, m in of_kind(objects, "ServiceMonitor").items()}
    assert ports == {"small": "http", "aibrix-diag": "metrics"}  # vLLM serves /metrics on its API port


def test_components_of_other_families_are_covered() -> None:
    data = obs_stack({}, gateway={}, kvCache={}, optimizer={"profiles": {"configMapRef": "gpu-profiles"}})
    model = data["spec"]["models"][0]
    autoscaling = {"policy": "apa", "metric": "optimizer_desired_replicas", "target": 1}
    model.update(replicas={"min": 1, "max": 3}, autoscaling=autoscaling, kvCache={"enabled": True})
    objects = compiled(data)
    found = monitors(objects)
    assert ("ServiceMonitor", "aibrix-gateway") in found and ("ServiceMonitor", "aibrix-optimizer") in found
    assert ("ServiceMonitor", "aibrix-kv-cache") in found and ("ServiceMonitor", "small") in found
    # The autoscaler exposes metrics on a container port without a Service: a PodMonitor.
    pod_monitors = of_kind(objects, "PodMonitor")
    for monitor in pod_monitors.values():
        workload = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == monitor["metadata"]["name"])
        assert monitor["spec"]["selector"]["matchLabels"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    assert pod_monitors, "the autoscaler's metrics port should be scraped"
    assert_valid(objects)


def test_rules_follow_the_slo_and_the_sections() -> None:
    objects = compiled(obs_stack({"prometheusRules": True}, diagnostics={}))
    (rule,) = of_kind(objects, "PrometheusRule").values()
    groups = {g["name"]: {r["alert"]: r for r in g["rules"]} for g in rule["spec"]["groups"]}
    assert sorted(groups) == ["aibrix-gpu-diagnostics", "aibrix-small"]
    model = groups["aibrix-small"]
    assert sorted(model) == ["AIBrixEngineDown", "AIBrixKVCacheFull", "AIBrixTPOTAboveSLO", "AIBrixTTFTAboveSLO"]
    assert model["AIBrixTTFTAboveSLO"]["expr"].endswith("> 0.5")
    assert 'model_name="small"' in model["AIBrixTTFTAboveSLO"]["expr"]
    assert model["AIBrixTPOTAboveSLO"]["expr"].endswith("> 0.04")
    assert all(r["labels"]["model"] == "small" for r in model.values())
    assert groups["aibrix-gpu-diagnostics"]["AIBrixGPUCheckFailed"]["labels"]["severity"] == "critical"


def test_rules_without_slo_or_monitors_keep_only_what_can_fire() -> None:
    data = obs_stack({"prometheusRules": True, "serviceMonitors": False})
    data["spec"]["models"][0]["slo"] = {}
    (rule,) = of_kind(compiled(data), "PrometheusRule").values()
    (group,) = rule["spec"]["groups"]
    assert [r["alert"] for r in group["rules"]] == ["AIBrixKVCacheFull"]
