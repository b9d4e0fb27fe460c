"""The KV-cache pool inside real vLLM 0.32 (CPU build): KV computed by one instance is found by
the other through the pool.

Two vLLM instances load the pool's connector through ``kv_connector_module_path``
(``runtime_components.kv.vllm_connector``) and share one pool member run by this test process
(same node, so blocks move through the shared-memory path). These are not ``vllm_pair`` (that
pair runs without the connector); ``conftest.py`` orders this module before every test that
uses the pair, so at most two vLLM instances are alive at once.

1. Cross-instance: instance A serves a 360-token prompt (2 full 128-token blocks go to the
   pool, one object per block and layer: ``min_key_bytes`` 0); instance B, which never saw
   it, serves it next: B's ``vllm:external_prefix_cache_hits_total`` grows by 256 tokens and
   its first-token top log-probabilities equal A's (a control prompt shows they depend on the
   context). The workers' own counters (``stats_path``) show the overlap inside real vLLM:
   B's loads were settled layer by layer by ``wait_for_layer_load`` (one wait per layer, none
   left for the end of the pass), and A's saves went through the background sender.
2. Same instance after a local reset (the kv engineer's original check): A forgets its local
   prefix cache (``/reset_prefix_cache``, dev mode) and loads the blocks back from the pool.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_components.kv.protocol import Op
from tests.kv.conftest import ThreadedServer

from .conftest import PYTHON
from .stack import engine_counters, http_json
from .vllm_process import VllmServer

# The module's fixture starts two vLLM instances of its own (about 2 minutes each on two busy
# cores), and pytest-timeout counts that setup against the first test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
EXTERNAL_HITS = "vllm:external_prefix_cache_hits_total"
CACHED_TOKENS = 256  # 2 full blocks of vLLM CPU's 128 tokens
LAYERS = 2  # the tiny model's attention layers: with min_key_bytes 0, one pool object per block and layer


class PooledPair:
    def __init__(self, pool: ThreadedServer, engines: list[VllmServer], stats: list[Path]) -> None:
        self.pool, self.engines, self.stats = pool, engines, stats

    def worker_stats(self, i: int) -> dict[str, int]:
        """Engine i's connector counters (its worker rewrites the file after each step and send)."""
        return json.loads(self.stats[i].read_text()) if self.stats[i].exists() else {}

    def wait_for_objects(self, count: int, timeout_s: float = 10.0) -> int:
        """Saves travel in the background: wait (bounded) until the member holds ``count`` objects."""
        deadline = time.monotonic() + timeout_s
        while len(self.pool.server.store.blocks) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.pool.server.store.blocks)


@pytest.fixture(scope="module")
def pooled_pair(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PooledPair]:
    work = tmp_path_factory.mktemp("kv")  # short: vLLM's IPC socket paths must fit in 107 bytes
    pool = ThreadedServer(node_id=None, capacity="256Mi", pageSize="64Ki", shm={"enabled": True, "dir": str(work)})
    def transfer(i: int) -> str:
        # Generous deadlines: on two shared cores a hello can wait for a busy CPU past the 100 ms
        # default, and a member marked dead makes every lookup a miss for its backoff.
        extra = {"members": pool.member, "timeout_ms": 5000, "connect_timeout_ms": 5000, "min_key_bytes": 0,
                 "stats_path": str(work / f"stats{i}.json")}
        return json.dumps({"kv_connector": "AIBrixKVConnector", "kv_role": "kv_both", "kv_connector_extra_config": extra,
                           "kv_connector_module_path": "runtime_components.kv.vllm_connector"})

    engines = [
        VllmServer(PYTHON, tiny_model / "model", work / f"vllm{i}", extra_args=["--kv-transfer-config", transfer(i)],
                   extra_env={"PYTHONPATH": str(REPO), "VLLM_SERVER_DEV_MODE": "1"})
        for i in range(2)
    ]
    try:
        for engine in engines:
            engine.start()
        yield PooledPair(pool, engines, [work / f"stats{i}.json" for i in range(2)])
    finally:
        for engine in engines:
            engine.stop()
        pool.stop()


def _first_logprobs(url: str, prompt: str) -> dict[str, float]:
    status, answer = http_json(url + "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 1,
                                                         "temperature": 0, "logprobs": 5})
    assert status == 200, answer
    return answer["choices"][0]["logprobs"]["top_logprobs"][0]


def _external_hits_after(url: str, before: float, expected: float, timeout_s: float = 10.0) -> float:
    """The growth of the external-hit counter, waiting (bounded) for vLLM to publish it: the
    API server updates its metrics from the engine's stats just after the answer is sent."""
    deadline = time.monotonic() + timeout_s
    while True:
        grown = engine_counters(url)[EXTERNAL_HITS] - before
        if grown >= expected or time.monotonic() > deadline:
            return grown
        time.sleep(0.1)


def _close(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[t] - b[t]) < 1e-3 for t in a)


def test_a_prefix_computed_by_one_instance_is_found_by_the_other(pooled_pair):
    first, second = pooled_pair.engines
    prompt = " ".join(["select users from orders where price"] * 60)  # 360 tokens: 2 full blocks
    blocks_before = len(pooled_pair.pool.server.store.blocks)
    computed = _first_logprobs(first.url, prompt)
    assert pooled_pair.wait_for_objects(blocks_before + 2 * LAYERS) == blocks_before + 2 * LAYERS  # 2 blocks x 2 layers
    assert pooled_pair.pool.server.counters.requests[Op.SHM_ALLOC] >= 1  # through shared memory (same node)
    saver = pooled_pair.worker_stats(0)
    assert saver["groups"] == LAYERS and saver["saved_blocks"] == 2 and saver["dropped_blocks"] == 0
    assert saver["save_jobs_sent"] == saver["save_jobs_queued"] == LAYERS  # one background put per layer group
    hits_before = engine_counters(second.url)[EXTERNAL_HITS]
    found = _first_logprobs(second.url, prompt)
    assert _external_hits_after(second.url, hits_before, CACHED_TOKENS) == CACHED_TOKENS
    loader = pooled_pair.worker_stats(1)
    assert loader["loaded_blocks"] == 2 and loader["failed_blocks"] == 0
    assert loader["layer_waits"] == LAYERS and loader["late_groups"] == 0  # each layer waited for its own objects
    assert engine_counters(first.url)[EXTERNAL_HITS] == 0  # A computed it; it found nothing in the pool
    assert _close(computed, found), (computed, found)
    control = _first_logprobs(second.url, " ".join(["join items on schema table count"] * 60))
    assert not _close(control, computed)  # the log-probabilities do depend on the (loaded) context


def test_an_instance_reloads_its_own_prefix_after_a_local_reset(pooled_pair):
    engine = pooled_pair.engines[0]
    prompt = " ".join(["group by column sum avg from items"] * 50)  # 350 tokens: 2 full blocks
    objects = len(pooled_pair.pool.server.store.blocks)
    computed = _first_logprobs(engine.url, prompt)
    pooled_pair.wait_for_objects(objects + 2 * LAYERS)
    status, _ = http_json(engine.url + "/reset_prefix_cache", {})
    assert status == 200
    hits_before = engine_counters(engine.url)[EXTERNAL_HITS]
    loaded = _first_logprobs(engine.url, prompt)
    assert _external_hits_after(engine.url, hits_before, CACHED_TOKENS) == CACHED_TOKENS
    assert _close(computed, loaded), (computed, loaded)
