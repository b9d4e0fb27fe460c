"""aibrix-runtime download against a real SeaweedFS S3 server: the model arrives whole, a second
run is a hit, and every failure class has its exit code and one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime_components.runtime.local.seaweed import SeaweedS3, free_ports
from runtime_components.runtime.local.tap import Tap

from .conftest import assert_model, env_for, run, store_model

CHUNK = 256 << 10
SIZES = {"config.json": 700, "tokenizer/vocab.txt": 5000, "model-00001.safetensors": 3 * CHUNK + 123, "empty.txt": 0}


def test_fetches_a_model_folder_then_hits(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, SIZES)
    dest = tmp_path / "cache" / "tiny"
    with Tap(s3.port) as tap:
        env = env_for(s3, AWS_ENDPOINT_URL=tap.url)
        first = run(model.uri, "--dest", str(dest), "--cache-root", str(tmp_path / "cache"),
                    "--chunk-bytes", str(CHUNK), "--parallel", "4", env=env)
        assert first.returncode == 0, first.stderr
        assert_model(dest, model)
        fetched = tap.body_bytes
        # the big file came in several ranged reads, not one
        big = [p for m, p in tap.requests if m == "GET" and "safetensors" in p]
        assert len(big) == 4
        marker = json.loads((dest / ".aibrix-model.json").read_text())
        assert marker["uri"] == model.uri and marker["bytes"] == model.total
        assert not list((tmp_path / "cache").glob(".*.partial"))

        tap.reset()
        second = run(model.uri, "--dest", str(dest), "--cache-root", str(tmp_path / "cache"), env=env)
        assert second.returncode == 0, second.stderr
        assert "cache hit" in second.stderr
        assert tap.requests == []  # a hit asks the store nothing
    assert fetched >= model.total


def test_a_prefix_naming_one_object_is_that_file(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {"weights.bin": 1000})
    r = run(f"{model.uri}/weights.bin", "--dest", str(tmp_path / "one"), env=env_for(s3))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "one" / "weights.bin").read_bytes() == model.files["weights.bin"]


def test_missing_prefix_exits_2(s3: SeaweedS3, tmp_path: Path) -> None:
    r = run("s3://models/no-such-model", "--dest", str(tmp_path / "m"), env=env_for(s3))
    assert r.returncode == 2
    assert r.stderr.startswith("error: s3://models/no-such-model: no objects under no-such-model/")
    assert "Traceback" not in r.stderr and not (tmp_path / "m").exists()


def test_missing_bucket_exits_2(s3: SeaweedS3, tmp_path: Path) -> None:
    r = run("s3://no-such-bucket/x", "--dest", str(tmp_path / "m"), env=env_for(s3))
    assert r.returncode == 2 and "NoSuchBucket" in r.stderr


def test_wrong_secret_exits_3(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {"a": 10})
    r = run(model.uri, "--dest", str(tmp_path / "m"), env=env_for(s3, AWS_SECRET_ACCESS_KEY="wrong"))
    assert r.returncode == 3
    assert "SignatureDoesNotMatch" in r.stderr and "hint:" in r.stderr


def test_no_credentials_exits_3_with_the_variables_to_set(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {"a": 10})
    env = env_for(s3)
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    r = run(model.uri, "--dest", str(tmp_path / "m"), env=env)
    assert r.returncode == 3
    assert "AWS_ACCESS_KEY_ID" in r.stderr


def test_unreachable_endpoint_exits_5(s3: SeaweedS3, tmp_path: Path) -> None:
    (closed,) = free_ports(1)
    r = run("s3://models/x", "--dest", str(tmp_path / "m"), "--endpoint", f"http://127.0.0.1:{closed}",
            "--timeout", "2", env=env_for(s3))
    assert r.returncode == 5
    assert "EndpointConnectionError" in r.stderr or "Could not connect" in r.stderr


def test_usage_errors_exit_1(s3: SeaweedS3, tmp_path: Path) -> None:
    env = env_for(s3)
    cases = [
        (["s3://models/x", "--dest", str(tmp_path / "m"), "--parallel", "0"], "--parallel 0 is out of range"),
        (["s3://models/x", "--dest", str(tmp_path / "m"), "--cache-max-bytes", "10"], "--cache-max-bytes needs --cache-root"),
        (["s3://models/x", "--dest", str(tmp_path / "elsewhere" / "m"), "--cache-root", str(tmp_path / "c")],
         "--dest must be a folder directly inside --cache-root"),
        (["ftp://host/x", "--dest", str(tmp_path / "m")], "unknown source scheme ftp://"),
        (["hf://org/repo", "--dest", str(tmp_path / "m")], "loaded by the engine"),
        (["s3://models/x"], "the following arguments are required: --dest"),
        (["s3://models/x", "--dest", str(tmp_path / "m"), "--cache-root", str(tmp_path), "--cache-max-bytes", "lots"],
         "is not a byte count"),
    ]
    for args, message in cases:
        r = run(*args, env=env)
        assert r.returncode == 1, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_gs_uses_the_s3_protocol_at_gcs_unless_an_endpoint_is_given(s3: SeaweedS3, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime_components.runtime.sources import SourceOptions
    from runtime_components.runtime.sources.s3 import S3Source

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3-only.example")  # meant for s3://, not gs://
    assert S3Source("gs://bucket/model", SourceOptions()).endpoint == "https://storage.googleapis.com"
    assert S3Source("s3://bucket/model", SourceOptions()).endpoint == "http://s3-only.example"
    # HMAC keys in the AWS_* variables, the XML API's S3 dialect: SeaweedFS stands in for GCS here
    model = store_model(s3, {"config.json": 20, "w.bin": 3000}, seed=40)
    r = run("gs://" + model.uri.removeprefix("s3://"), "--dest", str(tmp_path / "m"), "--endpoint", s3.endpoint,
            env=env_for(s3))
    assert r.returncode == 0, r.stderr
    assert_model(tmp_path / "m", model)
