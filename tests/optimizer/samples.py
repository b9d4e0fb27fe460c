"""Small hand-made configs, profiles and workloads shared by the optimizer tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aibrix_spec.components.optimizer import GpuProfile, OptimizerConfig

SLO = {"ttftP99Ms": 1000, "tpotP99Ms": 50}


def profile_doc(accelerator: str, scale: float, *, model: str = "chat") -> dict[str, Any]:
    """A 2 x 2 profile: rates fall with longer inputs and outputs, times ``scale``."""
    return {
        "model": model,
        "accelerator": accelerator,
        "gpusPerReplica": 1,
        "slo": SLO,
        "method": "measured",
        "inputBuckets": [256, 2048],
        "outputBuckets": [64, 512],
        "maxRps": [[4.0 * scale, 1.0 * scale], [1.0 * scale, 0.25 * scale]],
    }


def config_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "pools": [
            {"name": "a10", "accelerator": "nvidia-a10", "costPerGpuHour": 0.75},
            {"name": "l20", "accelerator": "nvidia-l20", "costPerGpuHour": 1.10, "maxGpus": 8},
        ],
        "models": [{"name": "chat", "pools": ["a10", "l20"], "minReplicas": 1, "slo": SLO}],
        "workload": {"file": "workload.json"},
        "profilesDir": "profiles",
        "deriveMissingProfiles": False,
    }
    doc.update(overrides)
    return doc


def write_setup(root: Path, *, config: dict[str, Any] | None = None,
                workload: dict[str, Any] | None = None) -> Path:
    """Write config.yaml, profiles/ and workload.json under ``root``; return the config path."""
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / "chat-a10.json").write_text(json.dumps(profile_doc("nvidia-a10", 1.0)))
    (root / "profiles" / "chat-l20.json").write_text(json.dumps(profile_doc("nvidia-l20", 2.0)))
    (root / "workload.json").write_text(json.dumps(workload if workload is not None else WORKLOAD))
    path = root / "config.json"
    path.write_text(json.dumps(config if config is not None else config_doc()))
    return path


WORKLOAD = {"cells": [
    {"model": "chat", "inputBucket": 256, "outputBucket": 64, "rps": 6.0},
    {"model": "chat", "inputBucket": 2048, "outputBucket": 64, "rps": 1.0},
]}


def profiles_by_pool() -> dict[tuple[str, str], GpuProfile]:
    return {
        ("chat", "a10"): GpuProfile.model_validate(profile_doc("nvidia-a10", 1.0)),
        ("chat", "l20"): GpuProfile.model_validate(profile_doc("nvidia-l20", 2.0)),
    }


def config(**overrides: Any) -> OptimizerConfig:
    return OptimizerConfig.model_validate(config_doc(**overrides))
