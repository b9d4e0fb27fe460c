"""Resume after a killed transfer, corruption in transit, and an object replaced mid-download,
each against the real S3 server through the loopback tap (which counts the bytes that really
crossed, so "fewer bytes the second time" is measured, not reported by the downloader)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from runtime_components.runtime.local.seaweed import SeaweedS3
from runtime_components.runtime.local.tap import Tap

from .conftest import BUCKET, assert_model, cli, client, env_for, run, store_model

CHUNK = 256 << 10


def _wait_until(predicate, proc: subprocess.Popen[str], limit_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the transfer never got there"
        time.sleep(0.01)


def _journaled(journal: Path) -> dict[str, int]:
    """Bytes per file the journal records as on disk (after its drops)."""
    kept: dict[str, int] = {}
    for line in journal.read_text().splitlines()[1:]:
        rec = json.loads(line)
        if "drop" in rec:
            kept.pop(rec["drop"].removeprefix("model/"), None)
        else:
            name = rec["path"].removeprefix("model/")
            kept[name] = kept.get(name, 0) + rec["end"] - rec["start"]
    return kept


def test_resume_after_a_killed_transfer_fetches_only_the_rest(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {"a.safetensors": 24 * CHUNK, "b.safetensors": 16 * CHUNK + 17, "config.json": 300}, seed=1)
    dest = tmp_path / "m"
    with Tap(s3.port, rate_bytes_per_s=4e6) as slow:
        env = env_for(s3, AWS_ENDPOINT_URL=slow.url)
        proc = subprocess.Popen(cli(model.uri, "--dest", str(dest), "--chunk-bytes", str(CHUNK), "--parallel", "4",
                                    env=env), env=env, stderr=subprocess.PIPE, text=True)
        _wait_until(lambda: slow.body_bytes >= model.total // 2, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()  # reaps it and closes its stderr pipe
    assert not dest.exists()
    journal = tmp_path / ".m.partial" / "journal.jsonl"
    assert json.loads(journal.read_text().splitlines()[0]) == {"uri": model.uri}
    kept = sum(_journaled(journal).values())

    with Tap(s3.port) as counter:
        r = run(model.uri, "--dest", str(dest), "--chunk-bytes", str(CHUNK), "--parallel", "4",
                env=env_for(s3, AWS_ENDPOINT_URL=counter.url))
        assert r.returncode == 0, r.stderr
        assert_model(dest, model)
        # killed at the midpoint: at most the in-flight ranges (4 x 256 KiB) are fetched twice
        assert counter.body_bytes < model.total * 0.5 + 4 * CHUNK + 4096
        assert model.total - kept <= counter.body_bytes < model.total - kept + 8192
    assert not (tmp_path / ".m.partial").exists()


def test_a_byte_corrupted_in_transit_is_caught_and_only_that_file_is_fetched_again(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {"good.bin": 6 * CHUNK, "bad.bin": 5 * CHUNK + 3}, seed=2)
    dest = tmp_path / "m"
    with Tap(s3.port) as tap:
        env = env_for(s3, AWS_ENDPOINT_URL=tap.url)
        tap.corrupt_path = f"/{BUCKET}/{model.prefix}/bad.bin"
        r = run(model.uri, "--dest", str(dest), "--chunk-bytes", str(CHUNK), "--parallel", "2", env=env)
        assert r.returncode == 4, r.stderr
        assert f"error: {model.prefix}/bad.bin: md5 of the downloaded bytes is" in r.stderr
        assert "expected: md5 " in r.stderr
        assert not dest.exists()
        kept = _journaled(tmp_path / ".m.partial" / "journal.jsonl")
        assert "bad.bin" not in kept  # dropped: the next run fetches it whole

        tap.corrupt_path = None
        tap.reset()
        r = run(model.uri, "--dest", str(dest), "--chunk-bytes", str(CHUNK), "--parallel", "2", env=env)
        assert r.returncode == 0, r.stderr
        assert_model(dest, model)
        # exactly what the journal did not keep came again (plus a small listing)
        fetched_again = model.total - sum(kept.values())
        assert fetched_again <= tap.body_bytes < fetched_again + 8192
        assert fetched_again >= len(model.files["bad.bin"])


def test_an_object_replaced_mid_download_fails_instead_of_mixing_versions(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {"w.bin": 32 * CHUNK}, seed=3)
    dest = tmp_path / "m"
    with Tap(s3.port, rate_bytes_per_s=3e6) as slow:
        env = env_for(s3, AWS_ENDPOINT_URL=slow.url)
        proc = subprocess.Popen(cli(model.uri, "--dest", str(dest), "--chunk-bytes", str(CHUNK), "--parallel", "2",
                                    env=env), env=env, stderr=subprocess.PIPE, text=True)
        _wait_until(lambda: slow.body_bytes >= model.total // 4, proc)
        replacement = bytes(reversed(model.files["w.bin"]))
        client(s3).put_object(Bucket=BUCKET, Key=f"{model.prefix}/w.bin", Body=replacement)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    assert "changed while it was being downloaded" in err
    assert not dest.exists()

    r = run(model.uri, "--dest", str(dest), env=env_for(s3))
    assert r.returncode == 0, r.stderr
    assert (dest / "w.bin").read_bytes() == replacement
