"""The optimizer renderer: a config the optimizer loads, profiles from a ConfigMap, and one
clear error for every stack it cannot serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compiler import SpecError

from .component_stacks import FULL, config_file, full, objects, set_model, validation_problems


def test_objects_validate_and_config_loads(tmp_path: Path) -> None:
    from runtime_components.optimizer.config import load_config

    objs = objects(FULL)
    assert {("Deployment", "aibrix-optimizer"), ("Service", "aibrix-optimizer"), ("ConfigMap", "aibrix-optimizer"),
            ("NetworkPolicy", "aibrix-optimizer")} <= set(objs)
    assert validation_problems(objs) == []
    config = load_config(config_file(objs, "aibrix-optimizer", "optimizer.yaml", tmp_path)).config
    (model,) = config.models
    assert (model.name, model.arch, model.pools, model.min_replicas, model.max_replicas) == ("llama-3-8b", "llama-3-8b", ["l20", "a10"], 3, 9)
    assert (model.slo.ttft_p99_ms, model.slo.tpot_p99_ms) == (800, 60)
    assert [(p.name, p.accelerator, p.max_gpus) for p in config.pools] == [("l20", "nvidia-l20", 32), ("a10", "nvidia-a10", None)]
    assert config.workload.gateway_metrics_urls == [
        "http://aibrix-gateway-0.aibrix-gateway.llm.svc:8080/metrics", "http://aibrix-gateway-1.aibrix-gateway.llm.svc:8080/metrics"]
    assert (config.interval_seconds, config.derive_missing_profiles, config.profiles_dir) == (30.0, True, None)


def test_profiles_config_map_is_mounted_as_profiles_dir() -> None:
    objs = objects(full(optimizer={"profiles": {"configMapRef": "gpu-profiles"}}))
    pod = objs[("Deployment", "aibrix-optimizer")]["spec"]["template"]["spec"]
    assert {"name": "profiles", "configMap": {"name": "gpu-profiles"}} in pod["volumes"]
    assert "profilesDir: /etc/aibrix/profiles" in objs[("ConfigMap", "aibrix-optimizer")]["data"]["optimizer.yaml"]


ERRORS: list[tuple[str, dict[str, Any], tuple[str | int, ...], str]] = [
    ("no SLO", set_model(FULL, 0, slo={}), ("spec", "models", 0, "slo"), "model llama-3-8b is placed by the optimizer but has no SLO"),
    ("no model", set_model(FULL, 0, autoscaling={"policy": "apa", "metric": "num_requests_running", "target": 8}),
     ("spec", "optimizer"), "the optimizer has no model to place"),
    ("unknown architecture", set_model(FULL, 0, name="my-model", source={"uri": "s3://weights/my-model"}), ("spec", "models", 0, "name"),
     "no profiles for model my-model: optimizer.profiles.configMapRef is empty and neither the model's arch, "
     "its name nor its source names an architecture the catalogue knows"),
]


@pytest.mark.parametrize(("case", "data", "path", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_stacks_the_optimizer_cannot_serve_fail_clearly(case: str, data: dict[str, Any], path: tuple[str | int, ...], message: str) -> None:
    with pytest.raises(SpecError) as info:
        objects(data)
    (d,) = info.value.diagnostics
    assert (d.path, d.message) == (path, message) and d.line > 0 and d.hint


def test_unknown_architecture_is_fine_with_measured_profiles() -> None:
    data = set_model(full(optimizer={"profiles": {"configMapRef": "gpu-profiles"}}), 0, name="my-model", source={"uri": "s3://weights/my-model"})
    text = objects(data)[("ConfigMap", "aibrix-optimizer")]["data"]["optimizer.yaml"]
    assert "deriveMissingProfiles: false" in text
