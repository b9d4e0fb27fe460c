"""The shared cache: atomic publish seen from a concurrent reader, two downloaders on one key
fetching once, and least-recently-used eviction under a byte budget (respecting held locks)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from runtime_components.runtime import cache
from runtime_components.runtime.download import DownloadRequest, download
from runtime_components.runtime.local.seaweed import SeaweedS3
from runtime_components.runtime.local.tap import Tap
from runtime_components.runtime.sources import SourceOptions

from .conftest import assert_model, cli, env_for, store_model

CHUNK = 256 << 10


def test_a_reader_never_sees_a_partial_model(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {f"shard-{i}.bin": 3 * CHUNK + i for i in range(4)} | {"config.json": 100}, seed=4)
    dest = tmp_path / "cache" / "m"
    expected = {name: len(data) for name, data in model.files.items()}
    seen = {"absent": 0, "complete": 0, "partial": 0}
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not dest.exists():
                seen["absent"] += 1
                continue
            sizes = {str(p.relative_to(dest)): p.stat().st_size for p in dest.rglob("*") if p.is_file()}
            marker = sizes.pop(cache.MARKER, None)
            seen["complete" if marker and sizes == expected else "partial"] += 1

    with Tap(s3.port, rate_bytes_per_s=4e6) as slow:
        env = env_for(s3, AWS_ENDPOINT_URL=slow.url)
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            r = subprocess.run(cli(model.uri, "--dest", str(dest), "--chunk-bytes", str(CHUNK),
                                   "--progress-interval", "0.2", env=env), env=env,
                               capture_output=True, text=True, timeout=120, check=False)
        finally:
            stop.set()
            thread.join()
    assert r.returncode == 0, r.stderr
    assert seen["partial"] == 0
    # progress lines while it ran: bytes so far / total, percentage, rate
    assert re.search(r"^aibrix-runtime: [\d.]+/[\d.]+ MB \(\d+%\) [\d.]+ MB/s$", r.stderr, re.M), r.stderr
    assert seen["absent"] > 0  # the loop really ran while the download did
    assert_model(dest, model)


def test_two_downloads_of_one_model_on_one_cache_fetch_it_once(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {"w.bin": 16 * CHUNK, "config.json": 50}, seed=5)
    root = tmp_path / "cache"
    dest = root / "m"
    with Tap(s3.port, rate_bytes_per_s=4e6) as tap:
        env = env_for(s3, AWS_ENDPOINT_URL=tap.url)
        args = cli(model.uri, "--dest", str(dest), "--cache-root", str(root), "--chunk-bytes", str(CHUNK), env=env)
        procs = [subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sorted("cache hit" in e for e in errs) == [False, True]
    gets = [path for method, path in tap.requests if method == "GET" and path.split("?")[0].endswith("/w.bin")]
    assert len(gets) == 16  # each range once, by one process
    assert tap.body_bytes < model.total + (64 << 10)
    assert_model(dest, model)


@pytest.fixture
def aws_env(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env_for(s3).items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)


def _fetch(uri: str, root: Path, name: str, budget: int) -> list[str]:
    out = download(DownloadRequest(uri=uri, dest=root / name, cache_root=root, cache_max_bytes=budget,
                                   options=SourceOptions(parallel=2), progress_interval_s=0))
    return [e.name for e in out.evicted]


def _age(root: Path, name: str, when: float) -> None:
    os.utime(root / name / cache.MARKER, (when, when))


@pytest.mark.usefixtures("aws_env")
def test_least_recently_used_models_are_evicted_to_fit_the_budget(s3: SeaweedS3, tmp_path: Path) -> None:
    size = 100_000
    models = {n: store_model(s3, {"w.bin": size}, seed=10 + i) for i, n in enumerate("abcd")}
    root = tmp_path / "cache"
    budget = int(2.5 * size)
    assert _fetch(models["a"].uri, root, "a", budget) == []
    assert _fetch(models["b"].uri, root, "b", budget) == []
    _age(root, "a", 1_000)
    _age(root, "b", 2_000)
    assert _fetch(models["a"].uri, root, "a", budget) == []  # a hit: touches a, now the newest
    assert _fetch(models["c"].uri, root, "c", budget) == ["b"]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["a", "c"]

    # a model whose lock another process holds is skipped, even when it is the oldest
    _age(root, "a", 1_000)
    _age(root, "c", 2_000)
    with cache.model_lock(root / "a") as held:
        assert held
        assert _fetch(models["d"].uri, root, "d", budget) == ["c"]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["a", "d"]
    assert cache.tree_bytes(root) <= budget


@pytest.mark.usefixtures("aws_env")
def test_the_model_just_published_is_kept_even_over_budget(s3: SeaweedS3, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    big = store_model(s3, {"w.bin": 50_000}, seed=20)
    small = store_model(s3, {"w.bin": 10_000}, seed=21)
    root = tmp_path / "cache"
    _fetch(small.uri, root, "small", 100_000)
    assert _fetch(big.uri, root, "big", 20_000) == ["small"]
    assert (root / "big" / "w.bin").stat().st_size == 50_000
    assert "over its budget" in capfd.readouterr().err


@pytest.mark.usefixtures("aws_env")
def test_leftovers_of_an_earlier_run_are_not_published(s3: SeaweedS3, tmp_path: Path) -> None:
    model = store_model(s3, {"w.bin": 1000}, seed=30)
    stale = tmp_path / ".m.partial" / "model" / "removed-upstream.bin"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    download(DownloadRequest(uri=model.uri, dest=tmp_path / "m", progress_interval_s=0))
    assert_model(tmp_path / "m", model)


@pytest.mark.usefixtures("aws_env")
def test_a_folder_not_published_by_the_downloader_is_never_replaced(s3: SeaweedS3, tmp_path: Path) -> None:
    from runtime_components.runtime.errors import UsageError

    model = store_model(s3, {"w.bin": 1000}, seed=31)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds files that aibrix-runtime did not publish"):
        download(DownloadRequest(uri=model.uri, dest=tmp_path / "home", progress_interval_s=0))
    assert (tmp_path / "home" / "notes.txt").read_text() == "mine"

    # a model this downloader published for another URI is replaced whole
    other = store_model(s3, {"x.bin": 10}, seed=32)
    download(DownloadRequest(uri=other.uri, dest=tmp_path / "m", progress_interval_s=0))
    download(DownloadRequest(uri=model.uri, dest=tmp_path / "m", progress_interval_s=0))
    assert_model(tmp_path / "m", model)
