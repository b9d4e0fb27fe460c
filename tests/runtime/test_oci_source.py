"""oci:// sources against a real registry (CNCF distribution, Debian's docker-registry) with
bearer-token auth: tar layers unpacked, titled files saved, digests checked, auth and absence
mapped to their exit codes."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import run
from .registry import PASSWORD, USER, Registry, registry_binary

WEIGHTS = random.Random(11).randbytes(600_000)
CONFIG = b'{"num_hidden_layers": 2}'


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if registry_binary() is None:
        pytest.skip("no OCI registry binary: apt-get install docker-registry (CNCF distribution)")
    pytest.importorskip("cryptography", reason="the test token service signs JWTs with cryptography")
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "DOCKER_CONFIG": str(docker),
            "_AUTH": json.dumps({"auths": {"127.0.0.1": {}, "PLACEHOLDER": {"auth": auth}}})}


def _with_credentials(env: dict[str, str], host: str) -> dict[str, str]:
    config = json.loads(env.pop("_AUTH"))
    config["auths"][host] = config["auths"].pop("PLACEHOLDER")
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps(config))
    return env


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_an_artifact_with_a_tar_layer_and_a_titled_file(registry: Registry, tmp_path: Path, env: dict[str, str]) -> None:
    registry.push("models/tiny", "v1", [
        ("application/vnd.oci.image.layer.v1.tar+gzip", _tar_gz({"weights/model.safetensors": WEIGHTS}), {}),
        ("application/vnd.aibrix.model.file", CONFIG, {"org.opencontainers.image.title": "config.json"}),
    ])
    env = _with_credentials(env, registry.host)
    registry.token_requests.clear()
    r = run(f"oci://{registry.host}/models/tiny:v1", "--dest", str(tmp_path / "m"), "--chunk-bytes", "65536", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "weights" / "model.safetensors").read_bytes() == WEIGHTS
    assert (tmp_path / "m" / "config.json").read_bytes() == CONFIG
    assert any("scope=repository%3Amodels%2Ftiny%3Apull" in p for p in registry.token_requests)


def test_by_digest(registry: Registry, tmp_path: Path, env: dict[str, str]) -> None:
    digest = registry.push("models/bydigest", "v1", [
        ("application/octet-stream", CONFIG, {"org.opencontainers.image.title": "config.json"})])
    r = run(f"oci://{registry.host}/models/bydigest@{digest}", "--dest", str(tmp_path / "m"),
            env=_with_credentials(env, registry.host))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "config.json").read_bytes() == CONFIG


def test_without_credentials_the_token_service_refuses_exit_3(registry: Registry, tmp_path: Path, env: dict[str, str]) -> None:
    registry.push("models/private", "v1", [("application/octet-stream", CONFIG, {"org.opencontainers.image.title": "c"})])
    env.pop("_AUTH")
    r = run(f"oci://{registry.host}/models/private:v1", "--dest", str(tmp_path / "m"), env=env)
    assert r.returncode == 3, r.stderr
    assert "the token service refused" in r.stderr


def test_an_unknown_tag_exits_2(registry: Registry, tmp_path: Path, env: dict[str, str]) -> None:
    r = run(f"oci://{registry.host}/models/tiny:no-such-tag", "--dest", str(tmp_path / "m"),
            env=_with_credentials(env, registry.host))
    assert r.returncode == 2, r.stderr
    assert "not found (HTTP 404" in r.stderr


def test_a_blob_corrupted_in_transit_fails_its_digest_exit_4(registry: Registry, tmp_path: Path, env: dict[str, str]) -> None:
    from runtime_components.runtime.local.tap import Tap

    layer = _tar_gz({"w.bin": WEIGHTS})
    registry.push("models/rot", "v1", [("application/vnd.oci.image.layer.v1.tar+gzip", layer, {})])
    digest = "sha256:" + __import__("hashlib").sha256(layer).hexdigest()
    with Tap(registry.port) as tap:
        tap.corrupt_path = f"/blobs/{digest}"
        r = run(f"oci://{registry.host}/models/rot:v1", "--dest", str(tmp_path / "m"), "--endpoint", tap.url,
                env=_with_credentials(env, registry.host))
    assert r.returncode == 4, r.stderr
    assert f"error: {digest}: sha256 of the downloaded bytes is" in r.stderr
    assert not (tmp_path / "m").exists()
