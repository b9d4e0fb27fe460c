"""Real vLLM 0.32's KV-cache events (CPU build) into the gateway's prefix index.

One vLLM instance of its own, started with ``--kv-events-config`` (a ZMQ publisher on a
free port, topic ``kv``) and ``--block-size 32`` (CPU attention needs a multiple of 32); this test process runs the gateway's
``KVEventSubscriber`` and ``EventTranslator`` into a ``PrefixIndex``. A prompt is served,
its token ids are read back from vLLM's ``/tokenize``, and our chained hashes of those ids
(``block_hashes(ids, 32, "tiny")``) must be in the index for that engine: every full block
of the prompt, as vLLM's ``BlockStored`` reported it. That pins the wire format (framing,
msgpack layout, tags, field names) and the translation to our hashes against the real
engine. The gateway's exact tokenizer (``ExactTokenizer`` over the model's
``tokenizer.json``) gives the same ids as ``/tokenize``, so a gateway configured with
``tokenizerFile`` finds the prompt; the approximate tokenizer's hashes are not in the index.
A ``/reset_prefix_cache`` (dev mode) then empties the engine's cache: the index follows
(``AllBlocksCleared``, published with the engine's next step).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_components.common.hashing import block_hashes
from runtime_components.common.tokens import tokenize
from runtime_components.gateway.exact_tokens import ExactTokenizer
from runtime_components.gateway.kv_events import EventTranslator, KVEventSubscriber
from runtime_components.gateway.policy.prefix import PrefixIndex

from .conftest import PYTHON
from .stack import http_json
from .vllm_process import VllmServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BLOCK = 32  # vLLM CPU attention takes multiples of 32 (16 fails: "No common block size")
PROMPT = ("The gateway routes each prompt to the engine that already holds its prefix in the KV cache, "
          "so the prefill is skipped. " * 3)


@pytest.fixture(scope="module")
def engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VllmServer, int]]:
    events_port = free_port()
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{events_port}", "topic": "kv"}
    server = VllmServer(PYTHON, tiny_model / "model", tmp_path_factory.mktemp("kvev"),
                        extra_args=["--kv-events-config", json.dumps(config), "--block-size", str(BLOCK)],
                        extra_env={"VLLM_SERVER_DEV_MODE": "1"})
    try:
        server.start()
        yield server, events_port
    finally:
        server.stop()


def _complete(server: VllmServer, prompt: str) -> None:
    status, body = http_json(server.url + "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 2})
    assert status == 200, body


def test_the_prompts_blocks_reach_the_index_in_our_hashes(engine: tuple[VllmServer, int], tiny_model: Path) -> None:
    server, events_port = engine
    exact = ExactTokenizer(str(tiny_model / "model" / "tokenizer.json"))
    index = PrefixIndex(100_000)
    translator = EventTranslator(index, "tiny", BLOCK, 100_000)

    async def scenario() -> list[int]:
        subscriber = KVEventSubscriber(translator, topic="kv")
        subscriber.set_endpoints({server.address: f"tcp://127.0.0.1:{events_port}"})
        loop = asyncio.get_running_loop()
        try:
            # a SUB socket misses what is published before its subscription lands: warm up until one batch arrives
            for k in range(30):
                await loop.run_in_executor(None, _complete, server, f"warm up number {k} " * 12)
                for _ in range(20):
                    if subscriber.batches:
                        break
                    await asyncio.sleep(0.1)
                if subscriber.batches:
                    break
            assert subscriber.batches, f"no KV event batch from vLLM; log tail:\n{server.log_tail()}"
            status, body = await loop.run_in_executor(
                None, http_json, server.url + "/tokenize", {"model": "tiny", "prompt": PROMPT})
            assert status == 200, body
            ids = list(body["tokens"])
            assert list(exact.ids(PROMPT)) == ids  # the gateway's exact tokenizer agrees with the engine
            await loop.run_in_executor(None, _complete, server, PROMPT)
            ours = block_hashes(ids, BLOCK, "tiny")
            assert len(ours) >= 2, len(ids)
            for _ in range(100):
                if index.matched_blocks(ours, [server.address])[server.address] == len(ours):
                    break
                await asyncio.sleep(0.1)
            assert index.matched_blocks(ours, [server.address])[server.address] == len(ours), translator.counters
            approximate = block_hashes(tokenize(PROMPT), BLOCK, "tiny")
            assert index.matched_blocks(approximate, [server.address])[server.address] == 0  # the known gap
            c = translator.counters
            assert c.decode_errors == 0 and c.block_size_mismatch == 0 and c.gaps == 0
            # the engine forgets its cache: so does the index
            status, body = await loop.run_in_executor(None, http_json, server.url + "/reset_prefix_cache", {})
            assert status == 200, body
            # vLLM publishes what a step queued: an idle engine's reset goes out with its next step
            await loop.run_in_executor(None, _complete, server, "another prompt after the reset")
            for _ in range(100):
                if index.matched_blocks(ours, [server.address])[server.address] == 0:
                    break
                await asyncio.sleep(0.1)
            assert index.matched_blocks(ours, [server.address])[server.address] == 0, translator.counters
            return ids
        finally:
            await subscriber.close()

    asyncio.run(scenario())
