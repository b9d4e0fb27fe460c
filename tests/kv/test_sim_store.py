"""The pool behind the simulated engine: a second engine loads what the first computed."""

from __future__ import annotations

import pytest

from aibrix_spec.components.kv import KVClientConfig
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.core import EngineCore
from runtime_components.kv.client import BlockingKVPoolClient
from runtime_components.kv.sim_store import ClientPool, InProcessPool, TransferModel
from tests.kv.conftest import ThreadedServer

CONFIG = EngineConfig(accelerator="nvidia-a10", model_arch="llama-3-8b", num_gpu_blocks=400, block_size=16)
PROMPT = list(range(1000, 1000 + 16 * 40 + 5))  # 40 full blocks + 5 tokens
MEASURED = {"bandwidth_gbs": 1.0, "latency_s": 0.0005}  # the order of what benchmarks/kv.py measures over TCP


def serve_one(core: EngineCore, request_id: str) -> tuple[float, float]:
    """Run one request alone; return (time to first token, total transfer seconds)."""
    core.add_request(SimRequest(request_id, PROMPT, max_tokens=4, arrival_s=0.0))
    now, ttft, transfer = 0.0, None, 0.0
    for _ in range(1000):
        if not core.has_work():
            break
        result = core.step(now)
        now, transfer = result.end_s, transfer + result.external_transfer_s
        if ttft is None and any(e.request_id == request_id and e.index == 0 for e in result.events):
            ttft = now
    assert ttft is not None
    return ttft, transfer


@pytest.mark.parametrize(
    ("block_bytes", "gbs", "latency", "n", "want"),
    [(2_097_152, 10.0, 0.001, 0, 0.0), (2_097_152, 10.0, 0.001, 10, 0.001 + 10 * 2_097_152 / 1e10),
     (1_000, 1.0, 0.0, 1_000_000, 1.0)],
)
def test_transfer_model(block_bytes, gbs, latency, n, want):
    assert TransferModel(block_bytes, gbs, latency).seconds(n) == pytest.approx(want)


def test_transfer_model_pays_a_round_trip_per_stage():
    assert TransferModel(1_000, 1.0, 0.002, stages=8).seconds(1_000) == pytest.approx(8 * 0.002 + 1e-3)


@pytest.mark.parametrize(("gbs", "latency", "stages"), [(0.0, 0.001, 1), (1.0, -1.0, 1), (1.0, 0.001, 0)])
def test_transfer_model_refuses_impossible_costs(gbs, latency, stages):
    with pytest.raises(ValueError, match="transfer model needs bandwidth > 0, latency >= 0 and stages >= 1"):
        TransferModel(1_000, gbs, latency, stages)


def test_transfer_model_block_bytes_come_from_the_catalogue():
    # llama-3-8b: 2 (K,V) * 32 layers * 8 kv heads * 128 head dim * 2 bytes = 128 KiB per token
    assert TransferModel.for_model("llama-3-8b", 16, bandwidth_gbs=1.0, latency_s=0.0).block_bytes == 16 * 131072


def test_in_process_pool_lets_a_second_engine_skip_the_prefill():
    pool = InProcessPool(1 << 30, TransferModel.for_model("llama-3-8b", 16, **MEASURED), members=3)
    ttft_a, transfer_a = serve_one(EngineCore(CONFIG, external_kv_store=pool), "a")
    b = EngineCore(CONFIG, external_kv_store=pool)
    ttft_b, transfer_b = serve_one(b, "b")
    assert transfer_a == 0.0 and transfer_b == pytest.approx(pool.transfer_seconds(40))
    assert b.counters.external_hits == 40 * 16
    assert ttft_b < ttft_a
    assert sum(len(c) for c in pool.caches.values()) == 40 and all(len(c) for c in pool.caches.values())


def test_in_process_pool_too_small_to_help_changes_nothing():
    transfer = TransferModel.for_model("llama-3-8b", 16, **MEASURED)
    pool = InProcessPool(transfer.block_bytes * 4, transfer, policy="lru")  # holds only the last 4 blocks
    serve_one(EngineCore(CONFIG, external_kv_store=pool), "a")
    b = EngineCore(CONFIG, external_kv_store=pool)
    serve_one(b, "b")
    assert b.counters.external_hits == 0  # the prefix's first block was evicted: nothing leads


def test_client_pool_over_a_real_member():
    server = ThreadedServer(capacity="1Mi", pageSize="1Ki")
    client = BlockingKVPoolClient(KVClientConfig.model_validate(
        {"members": {"static": [server.member]}, "timeoutMs": 2000}), node_id="elsewhere")
    try:
        pool = ClientPool(client, TransferModel.for_model("llama-3-8b", 16, **MEASURED))
        serve_one(EngineCore(CONFIG, external_kv_store=pool), "a")
        assert len(server.server.store.blocks) == 40
        b = EngineCore(CONFIG, external_kv_store=pool)
        serve_one(b, "b")
        assert b.counters.external_hits == 40 * 16
        key = next(iter(server.server.store.blocks))
        assert bytes(client.get([key])[0] or b"")[:8] == key.to_bytes(8, "little")
    finally:
        client.close()
        server.stop()
