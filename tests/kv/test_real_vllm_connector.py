"""The connector inside a real vLLM 0.32 (CPU build): KV computed once, loaded from the pool.

Needs the real-engine environment (``AIBRIX_REAL_ENGINE_PYTHON``, set by
``bash scripts/test-real-engine``); skips cleanly without it. One vLLM with the connector
and a pool member (this process, same node: the shared-memory path) serves a prompt, its
local prefix cache is reset, and the same prompt is served again: vLLM must report external
prefix-cache hits, and the first token's top log-probabilities must match the run that
computed the KV (a control prompt shows they depend on the context).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from runtime_components.kv.protocol import Op
from tests.kv.conftest import ThreadedServer

PYTHON = os.environ.get("AIBRIX_REAL_ENGINE_PYTHON", "")
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not PYTHON, reason="real vLLM not set up; run: bash scripts/test-real-engine")


def _post(url: str, body: dict | None) -> dict:
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip().startswith(b"{") else {}


def _first_logprobs(url: str, prompt: str) -> dict[str, float]:
    answer = _post(url + "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 1,
                                             "temperature": 0, "logprobs": 5})
    return answer["choices"][0]["logprobs"]["top_logprobs"][0]


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


@pytest.mark.slow
def test_real_vllm_loads_prefix_blocks_from_the_pool(tmp_path_factory):
    from tests.real_engine.vllm_process import VllmServer

    tmp_path = tmp_path_factory.mktemp("kv")  # short: vLLM's IPC socket paths must fit in 107 bytes
    env = dict(os.environ, HF_HUB_OFFLINE="1", HOME=str(tmp_path), TMPDIR=str(tmp_path))
    subprocess.run([PYTHON, str(REPO / "tests" / "real_engine" / "tiny_model.py"), str(tmp_path / "tiny")],
                   check=True, env=env, timeout=300)
    pool = ThreadedServer(node_id=None, capacity="256Mi", pageSize="64Ki", shm={"enabled": True, "dir": str(tmp_path)})
    transfer = {"kv_connector": "AIBrixKVConnector", "kv_connector_module_path": "runtime_components.kv.vllm_connector",
                "kv_role": "kv_both", "kv_connector_extra_config": {"members": pool.member, "timeout_ms": 5000}}
    engine = VllmServer(PYTHON, tmp_path / "tiny" / "model", tmp_path / "vllm",
                        extra_args=["--kv-transfer-config", json.dumps(transfer)],
                        extra_env={"PYTHONPATH": str(REPO), "VLLM_SERVER_DEV_MODE": "1"})
    try:
        engine.start()
        prompt = " ".join(["select users from orders where price"] * 60)  # 360 tokens: 2 full 128-token blocks
        computed = _first_logprobs(engine.url, prompt)
        assert len(pool.server.store.blocks) == 2  # saved by the worker during the forward pass
        assert pool.server.counters.requests[Op.SHM_ALLOC] >= 1  # through shared memory (same node)
        _post(engine.url + "/reset_prefix_cache", None)  # forget the local copy
        loaded = _first_logprobs(engine.url, prompt)
        assert _metric(engine.url, "vllm:external_prefix_cache_hits_total") == 256.0
        assert computed.keys() == loaded.keys()
        assert all(abs(computed[t] - loaded[t]) < 1e-3 for t in computed)
        control = _first_logprobs(engine.url, " ".join(["join items on schema table count"] * 60))
        assert control != computed  # the log-probabilities do depend on the (loaded) context
    finally:
        engine.stop()
        pool.stop()
