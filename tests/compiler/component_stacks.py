"""Stacks and helpers shared by the tests of the gateway, kv-cache, autoscaling and optimizer
renderers: a two-pool stack using every one of those sections, and a compile-to-objects helper."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from compiler.pipeline import compile_manifests

from .helpers import dump

FULL: dict[str, Any] = {
    "apiVersion": "aibrix.ai/v1alpha1",
    "kind": "InferenceStack",
    "metadata": {"name": "demo", "namespace": "llm"},
    "spec": {
        "gpuPools": [
            {"name": "l20", "accelerator": "nvidia-l20", "gpusPerNode": 8, "maxNodes": 4},
            {"name": "a10", "accelerator": "nvidia-a10", "gpusPerNode": 4},
        ],
        "models": [
            {
                "name": "llama-3-8b",
                "source": {"uri": "hf://meta-llama/Meta-Llama-3-8B-Instruct"},
                "placement": {"pools": ["l20", "a10"]},
                "replicas": {"min": 3, "max": 9},
                "autoscaling": {"policy": "apa", "metric": "optimizer_desired_replicas", "target": 1},
                "slo": {"ttftP99Ms": 800, "tpotP99Ms": 60},
                "routing": {"policy": "prefix-cache-aware:2,least-request"},
                "kvCache": {"enabled": True},
            },
            {
                "name": "qwen",
                "source": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct"},
                "engine": {"port": 8001},
                "placement": {"pools": ["l20"]},
                "replicas": {"min": 1, "max": 4},
                "autoscaling": {"policy": "kpa", "metric": "num_requests_running", "target": 16},
            },
            {
                "name": "fixed",
                "source": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
                "placement": {"pools": ["a10"]},
                "replicas": {"min": 2},
            },
        ],
        "gateway": {
            "replicas": 2,
            "users": {"secretRef": "api-keys"},
            "rateLimits": {"tiers": {"free": {"rpm": 60, "tpm": 20000}}, "defaultTier": "free"},
            "redis": {"url": "redis://redis.llm.svc:6379/0"},
            "requestTimeout": "10m",
        },
        "kvCache": {"replicas": 2, "memoryPerReplica": "2Gi", "eviction": "lru"},
        "optimizer": {"interval": "30s"},
    },
}


def full(**spec_updates: Any) -> dict[str, Any]:
    data = copy.deepcopy(FULL)
    data["spec"].update(spec_updates)
    return data


def set_model(data: dict[str, Any], index: int, **updates: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    data["spec"]["models"][index].update(updates)
    return data


def objects(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Compile ``data``; every object by (kind, name)."""
    _plan, manifests = compile_manifests(dump(data), source_name="t.yaml")
    return {(m.kind, m.name): m.body for m in manifests}


def config_file(objs: dict[tuple[str, str], dict[str, Any]], name: str, key: str, folder: Path) -> Path:
    """Write ConfigMap ``name``'s ``key`` into ``folder`` (as the pod would see it) and return the path."""
    path = folder / key
    path.write_text(objs[("ConfigMap", name)]["data"][key], encoding="utf-8")
    return path


def engine_args(objs: dict[tuple[str, str], dict[str, Any]], deployment: str) -> list[str]:
    return list(objs[("Deployment", deployment)]["spec"]["template"]["spec"]["containers"][0]["args"])


def validation_problems(objs: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    from compiler.output_check import check_objects

    return check_objects(list(objs.values()), kube_version="1.37", crd_dir=None)


def load_yaml(text: str) -> Any:
    return yaml.safe_load(text)
