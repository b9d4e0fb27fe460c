"""Shared helpers of the compiler tests: paths and a minimal valid stack."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "stacks"

MINIMAL: dict[str, Any] = {
    "apiVersion": "aibrix.ai/v1alpha1",
    "kind": "InferenceStack",
    "metadata": {"name": "demo", "namespace": "llm"},
    "spec": {
        "gpuPools": [{"name": "l4", "accelerator": "nvidia-l4", "gpusPerNode": 4}],
        "models": [
            {
                "name": "small",
                "source": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
                "placement": {"pools": ["l4"]},
            }
        ],
    },
}


def minimal(**spec_updates: Any) -> dict[str, Any]:
    """A deep copy of MINIMAL with spec keys replaced."""
    data = copy.deepcopy(MINIMAL)
    data["spec"].update(spec_updates)
    return data


def with_model(**model_updates: Any) -> dict[str, Any]:
    """MINIMAL whose only model has keys replaced."""
    data = copy.deepcopy(MINIMAL)
    data["spec"]["models"][0].update(model_updates)
    return data


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)
