"""Every weights source compiles: hub and volume as the engine reads them, s3:// and gs://
streamed by vLLM's Run:ai Model Streamer, everything else (and loader: download) fetched by an
init container into the model cache; on every engine pod, single- and multi-node."""

from __future__ import annotations

from typing import Any

import pytest

from aibrix_spec.model_cache import cache_key
from compiler import SpecError, compile_stack
from compiler.manifest import pod_templates
from compiler.pipeline import compile_manifests

from .helpers import dump, minimal
from .render_helpers import assert_valid, env_of


def _stack(source: dict[str, Any], *, engine: str = "vllm", multi_node: bool = False, cache: dict[str, Any] | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"name": "m", "source": source, "engine": {"type": engine}, "placement": {"pools": ["l4"]}}
    if multi_node:
        model["parallelism"] = {"tensor": 4, "pipeline": 2}
    spec: dict[str, Any] = {"models": [model]}
    if cache is not None:
        spec["modelCache"] = cache
    return minimal(**spec)


def _pods(data: dict[str, Any]) -> list[dict[str, Any]]:
    _plan, manifests = compile_manifests(dump(data), source_name="t.yaml")
    return [t["spec"] for m in manifests if m.kind in ("Deployment", "RayCluster") for t in pod_templates(m.body)]


def _args(pod: dict[str, Any]) -> str:
    engine = pod["containers"][0]
    return " ".join(engine.get("args", []))


@pytest.mark.parametrize("multi_node", [False, True], ids=["single", "multi"])
def test_s3_streams_with_the_endpoint_on_every_pod(multi_node: bool) -> None:
    data = _stack({"uri": "s3://models/m", "secretRef": "creds", "endpoint": "http://minio:9000"}, multi_node=multi_node)
    pods = _pods(data)
    assert len(pods) == (2 if multi_node else 1)
    for pod in pods:
        env = env_of(pod["containers"][0])
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"] == "0"
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "creds"}}]
        assert "model-download" not in [c["name"] for c in pod.get("initContainers", [])]  # streamed, not downloaded
    head = _args(pods[0])
    assert "--model s3://models/m" in head and "--load-format runai_streamer" in head
    assert_valid([m.body for m in compile_manifests(dump(data), source_name="t.yaml")[1]])


def test_gs_streams_through_the_cloud_storage_endpoint() -> None:
    (pod,) = _pods(_stack({"uri": "gs://bucket/m", "secretRef": "hmac"}))
    assert "--model s3://bucket/m" in _args(pod)
    assert env_of(pod["containers"][0])["AWS_ENDPOINT_URL"] == "https://storage.googleapis.com"


_DOWNLOADED: list[tuple[dict[str, Any], str, bool]] = [
    ({"uri": "s3://models/m", "secretRef": "creds"}, "sglang", False),  # no streamer in SGLang
    ({"uri": "s3://models/m", "secretRef": "creds", "loader": "download"}, "vllm", False),
    ({"uri": "https://host/m.tar.gz", "secretRef": "tok"}, "vllm", True),
    ({"uri": "oci://registry.example.com/models/m:v1", "secretRef": "tok"}, "vllm", True),
    ({"uri": "https://host/m.tar.gz"}, "vllm", False),
]


@pytest.mark.parametrize(
    ("source", "engine", "token", "multi_node"),
    [(*case, False) for case in _DOWNLOADED] + [(*case, True) for case in _DOWNLOADED if case[1] == "vllm"],  # multi-node runs vLLM
)
def test_downloaded_sources_get_the_init_container_on_every_pod(source: dict[str, Any], engine: str, token: bool, multi_node: bool) -> None:
    data = _stack(source, engine=engine, multi_node=multi_node)
    dest = f"/var/cache/aibrix-models/{cache_key(source['uri'])}"
    for pod in _pods(data):
        (init,) = [c for c in pod["initContainers"] if c["name"] == "model-download"]
        assert init["command"] == ["aibrix-runtime", "download"]
        assert init["args"][:3] == [source["uri"], "--dest", dest]
        oci = source["uri"].startswith("oci://")
        assert ("--token-file" in init["args"]) == (token and not oci)
        assert (init.get("env") == [{"name": "DOCKER_CONFIG", "value": "/var/run/secrets/aibrix-registry"}]) == oci
        assert ("envFrom" in init) == (not token and "secretRef" in source)
        assert {"name": "model-cache", "emptyDir": {}} in pod["volumes"]
        assert {"name": "model-cache", "mountPath": "/var/cache/aibrix-models", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert dest in _args(_pods(data)[0])
    assert_valid([m.body for m in compile_manifests(dump(data), source_name="t.yaml")[1]])


@pytest.mark.parametrize(
    ("cache", "volume"),
    [
        ({"type": "pvc", "claimName": "models", "maxSize": "100Gi"}, {"persistentVolumeClaim": {"claimName": "models"}}),
        ({"type": "hostPath", "maxSize": "100Gi"}, {"hostPath": {"path": "/var/lib/aibrix/models", "type": "DirectoryOrCreate"}}),
    ],
)
def test_a_shared_cache_downloads_instead_of_streaming_and_bounds_itself(cache: dict[str, Any], volume: dict[str, Any]) -> None:
    (pod,) = _pods(_stack({"uri": "s3://models/m", "secretRef": "creds"}, cache=cache))
    (init,) = pod["initContainers"]
    assert init["args"][3:] == ["--cache-root", "/var/cache/aibrix-models", "--cache-max-bytes", str(100 << 30)]
    assert {"name": "model-cache", **volume} in pod["volumes"]


@pytest.mark.parametrize(
    ("source", "engine", "message"),
    [
        ({"uri": "s3://b/m", "loader": "stream"}, "sglang", "loader: stream reads s3:// or gs:// weights with vLLM"),
        ({"uri": "https://h/m.tar", "loader": "stream"}, "vllm", "loader: stream reads s3:// or gs:// weights with vLLM"),
        ({"uri": "hf://o/m", "loader": "download"}, "vllm", "loader: download fetches s3://, gs://, https:// and oci:// sources"),
        ({"uri": "hf://o/m", "endpoint": "http://minio:9000"}, "vllm", "source.endpoint is the S3-compatible endpoint"),
    ],
)
def test_loader_choices_that_cannot_work_are_refused(source: dict[str, Any], engine: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_stack(dump(_stack(source, engine=engine)), source_name="t.yaml")
    assert any(d.message.startswith(message) and d.line > 0 for d in info.value.diagnostics)


def _optimized(model: dict[str, Any]) -> dict[str, Any]:
    base = {"placement": {"pools": ["l4"]}, "slo": {"ttftP99Ms": 500},
            "replicas": {"min": 1, "max": 4}, "autoscaling": {"policy": "hpa", "metric": "optimizer_desired_replicas", "target": 1}}
    return minimal(models=[{**base, **model}], gateway={}, optimizer={})


@pytest.mark.parametrize(
    "model",
    [
        {"name": "chat-small", "source": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct"}},  # inferred from the source
        {"name": "chat-small", "arch": "qwen2.5-7b", "source": {"uri": "s3://b/weights"}},  # said explicitly
    ],
)
def test_model_facts_come_from_arch_or_the_source(model: dict[str, Any]) -> None:
    files = compile_stack(dump(_optimized(model)), source_name="t.yaml")
    assert "arch: qwen2.5-7b" in files["optimizer/configmap-aibrix-optimizer.yaml"]


def test_an_unknown_arch_is_refused_with_a_suggestion() -> None:
    with pytest.raises(SpecError) as info:
        compile_stack(dump(_optimized({"name": "c", "arch": "qwen2.5-7", "source": {"uri": "hf://o/m"}})), source_name="t.yaml")
    (d,) = [d for d in info.value.diagnostics if d.path[-1] == "arch"]
    assert d.message == 'unknown architecture "qwen2.5-7"' and d.hint == 'did you mean "qwen2.5-7b"?'


def test_sglang_models_are_scaled_and_alerted_on_sglang_names() -> None:
    model = {"name": "m", "source": {"uri": "hf://o/m"}, "engine": {"type": "sglang"}, "placement": {"pools": ["l4"]},
             "slo": {"ttftP99Ms": 500}, "replicas": {"min": 1, "max": 4},
             "autoscaling": {"policy": "hpa", "useKeda": True, "metric": "concurrency", "target": 8}}
    files = compile_stack(dump(minimal(models=[model], observability={"prometheusRules": True})), source_name="t.yaml")
    query = files["autoscaler/scaledobject-m.yaml"]
    assert "sum(sglang:num_running_reqs{" in query and "sum(sglang:num_queue_reqs{" in query and "vllm:" not in query
    rules = files["observability/prometheusrule-aibrix-alerts.yaml"]
    assert "sglang:time_to_first_token_seconds_bucket" in rules and "sglang:token_usage" in rules and "vllm:" not in rules
