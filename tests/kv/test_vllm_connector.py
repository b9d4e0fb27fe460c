"""The vLLM connector driven in vLLM's call order, with fakes of what vLLM passes in.

vLLM is not installed here: a fake `vllm...v1.base` mirroring the 0.32 interface
(constructor (vllm_config, role, kv_cache_config), bind/clear/_get_connector_metadata) is put
in sys.modules, the connector module is re-imported against it, and numpy arrays stand in
for the paged KV tensors (layout (2, num_blocks, block_size, heads, head_dim)). The pool is
real (a member on loopback). What stays unverified here: torch tensor moves and vLLM's own
scheduler/model-runner calling these hooks (see docs/kv.md).
"""

from __future__ import annotations

import abc
import enum
import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from runtime_components.common.hashing import block_hashes
from runtime_components.kv.connector_logic import client_config_from_extra, part_key, rank_key

np = pytest.importorskip("numpy")

from tests.kv.conftest import ThreadedServer  # noqa: E402

BLOCK = 4
NUM_BLOCKS = 16
LAYERS = ["model.layers.0.self_attn.attn", "model.layers.1.self_attn.attn"]


# -- fakes of vLLM -----------------------------------------------------------------------------


def fake_vllm_base() -> types.ModuleType:
    base = types.ModuleType("vllm.distributed.kv_transfer.kv_connector.v1.base")

    class KVConnectorRole(enum.Enum):
        SCHEDULER = 0
        WORKER = 1

    class KVConnectorMetadata(abc.ABC):  # noqa: B024
        pass

    class KVConnectorBase_V1(abc.ABC):  # noqa: B024 (a stand-in for vLLM's base class)
        def __init__(self, vllm_config, role, kv_cache_config):
            self._connector_metadata = None
            self._vllm_config = vllm_config
            self._kv_transfer_config = vllm_config.kv_transfer_config
            self._kv_cache_config = kv_cache_config
            self._role = role

        def bind_connector_metadata(self, connector_metadata):
            self._connector_metadata = connector_metadata

        def clear_connector_metadata(self):
            self._connector_metadata = None

        def _get_connector_metadata(self):
            assert self._connector_metadata is not None
            return self._connector_metadata

        for name in ("start_load_kv", "wait_for_layer_load", "save_kv_layer", "wait_for_save",
                     "get_num_new_matched_tokens", "update_state_after_alloc", "build_connector_meta"):
            locals()[name] = abc.abstractmethod(lambda self, *a, **k: None)

    base.KVConnectorRole = KVConnectorRole
    base.KVConnectorMetadata = KVConnectorMetadata
    base.KVConnectorBase_V1 = KVConnectorBase_V1
    return base


@pytest.fixture
def connector_module(monkeypatch):
    names = ["vllm", "vllm.distributed", "vllm.distributed.kv_transfer", "vllm.distributed.kv_transfer.kv_connector",
             "vllm.distributed.kv_transfer.kv_connector.v1"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, names[-1] + ".base", fake_vllm_base())
    module = importlib.reload(importlib.import_module("runtime_components.kv.vllm_connector"))
    module.AIBrixKVConnector.tensor_ops_factory = NumpyOps
    yield module
    for name in names + [names[-1] + ".base"]:
        monkeypatch.delitem(sys.modules, name)
    for attr in ("AIBrixKVConnector", "AIBrixKVConnectorMetadata"):  # reload keeps old globals
        module.__dict__.pop(attr, None)
    importlib.reload(module)


class NumpyOps:
    """TensorOps over numpy arrays (the connector's torch ops, minus torch)."""

    def block_dim(self, layer, num_blocks):
        return 1 if layer.shape[0] == 2 and layer.shape[1] == num_blocks else 0

    def block_bytes(self, layer, block_dim):
        return layer.size // layer.shape[block_dim] * layer.itemsize

    def extract(self, layer, block_dim, block_ids):
        raw = np.ascontiguousarray(np.moveaxis(np.take(layer, list(block_ids), axis=block_dim), block_dim, 0))
        rows = raw.view(np.uint8).reshape(len(block_ids), -1)
        return [memoryview(rows[i]) for i in range(len(block_ids))]

    def inject(self, layer, block_dim, block_ids, blobs):
        shape = [len(block_ids)] + [n for i, n in enumerate(layer.shape) if i != block_dim]
        source = np.frombuffer(b"".join(blobs), dtype=layer.dtype).reshape(shape)
        index = (slice(None),) * block_dim + (list(block_ids),)
        layer[index] = np.moveaxis(source, 0, block_dim)


@dataclass
class KVTransferConfig:
    kv_connector_extra_config: dict
    kv_role: str = "kv_both"


@dataclass
class VllmConfig:
    kv_transfer_config: KVTransferConfig
    cache_config: Any = field(default_factory=lambda: types.SimpleNamespace(block_size=BLOCK, num_gpu_blocks=NUM_BLOCKS))
    model_config: Any = field(default_factory=lambda: types.SimpleNamespace(model="/models/tiny", served_model_name=["tiny-llama"]))


@dataclass
class Request:
    request_id: str
    prompt_token_ids: list[int]
    lora_request: Any = None


@dataclass
class Blocks:
    ids: list[int]

    def get_block_ids(self):
        return (list(self.ids),)


@dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: list[int]
    block_ids: tuple
    num_computed_tokens: int


@dataclass
class CachedRequestData:
    req_ids: list[str] = field(default_factory=list)
    resumed_req_ids: set = field(default_factory=set)
    new_block_ids: list = field(default_factory=list)
    num_computed_tokens: list = field(default_factory=list)


@dataclass
class SchedulerOutput:
    scheduled_new_reqs: list
    scheduled_cached_reqs: CachedRequestData
    num_scheduled_tokens: dict


class Engine:
    """One engine's pair of connectors (scheduler process + one worker) and its paged cache."""

    def __init__(self, module, member: str, seed: int, weights: str = "/models/tiny", kv_role: str = "kv_both",
                 **extra: Any):
        config = VllmConfig(KVTransferConfig({"members": member, "timeout_ms": 2000, **extra}, kv_role),
                            model_config=types.SimpleNamespace(model=weights, served_model_name=["tiny-llama"]))
        kv_cache_config = types.SimpleNamespace(num_blocks=NUM_BLOCKS)
        role = sys.modules["vllm.distributed.kv_transfer.kv_connector.v1.base"].KVConnectorRole
        self.scheduler = module.AIBrixKVConnector(config, role.SCHEDULER, kv_cache_config)
        self.worker = module.AIBrixKVConnector(config, role.WORKER, kv_cache_config)
        rng = np.random.default_rng(seed)
        self.kv = {name: rng.standard_normal((2, NUM_BLOCKS, BLOCK, 2, 8)).astype(np.float16) for name in LAYERS}
        self.worker.register_kv_caches(self.kv)

    def forward(self, output: SchedulerOutput, flush: bool = True) -> None:
        """The model runner's sequence of worker hooks for one step (``flush``: then wait for
        the background saves, as a test must; a producer's step has waited for them itself)."""
        meta = self.scheduler.build_connector_meta(output)
        self.worker.bind_connector_metadata(meta)
        self.worker.start_load_kv(forward_context=None)
        for name in LAYERS:
            self.worker.wait_for_layer_load(name)
            self.worker.save_kv_layer(name, self.kv[name], attn_metadata=None)
        self.worker.wait_for_save()
        self.worker.clear_connector_metadata()
        if flush:
            assert self.worker._worker.flush_saves(10)

    def close(self):
        self.scheduler.shutdown()
        self.worker.shutdown()


@pytest.fixture
def pool():
    server = ThreadedServer(capacity="1Mi", pageSize="1Ki")
    yield server
    server.stop()


def prompt(n_tokens: int, start: int = 100) -> list[int]:
    return list(range(start, start + n_tokens))


def new_step(req: Request, block_ids: list[int], computed: int, scheduled: int) -> SchedulerOutput:
    data = NewRequestData(req.request_id, req.prompt_token_ids, (block_ids,), computed)
    return SchedulerOutput([data], CachedRequestData(), {req.request_id: scheduled})


def test_engine_b_loads_what_engine_a_computed(connector_module, pool):
    # Same served model, weights mounted at different paths: the keys must still match.
    a = Engine(connector_module, pool.member, 1, weights="/mnt/a/tiny")
    b = Engine(connector_module, pool.member, 2, weights="/data/b/tiny")
    req = Request("r1", prompt(23))  # 5 full blocks + 3 tokens
    # Engine A: nothing in the pool yet; it computes the prompt and saves its 5 full blocks.
    assert a.scheduler.get_num_new_matched_tokens(req, 0) == (0, False)
    a.scheduler.update_state_after_alloc(req, Blocks([3, 4, 5, 6, 7, 8]), 0)
    a.forward(new_step(req, [3, 4, 5, 6, 7, 8], 0, 23))
    assert a.scheduler.request_finished(req, [3, 4, 5, 6, 7, 8]) == (False, None)
    assert a.worker._worker.stats["saved_blocks"] == 5
    # Engine B: 5 blocks in the pool, but one prompt token must stay to compute -> (23-1)//4 = 5 blocks.
    req_b = Request("r9", prompt(23))
    assert b.scheduler.get_num_new_matched_tokens(req_b, 0) == (20, False)
    assert b.scheduler.get_num_new_matched_tokens(req_b, 8) == (12, False)  # 2 blocks cached locally
    b.scheduler.get_num_new_matched_tokens(req_b, 0)
    b.scheduler.update_state_after_alloc(req_b, Blocks([10, 2, 12, 0, 14, 15]), 20)
    b.forward(new_step(req_b, [10, 2, 12, 0, 14, 15], 20, 3))
    for name in LAYERS:
        assert np.array_equal(b.kv[name][:, [10, 2, 12, 0, 14]], a.kv[name][:, [3, 4, 5, 6, 7]])
    assert b.worker.get_block_ids_with_load_errors() == set()
    a.close()
    b.close()


def test_prefill_producer_hands_off_and_decode_consumer_loads_without_saving(connector_module, pool):
    prefill = Engine(connector_module, pool.member, 21, kv_role="kv_producer")
    decode = Engine(connector_module, pool.member, 22, kv_role="kv_consumer")
    req = Request("p1", prompt(14, start=300))  # 3 full blocks + 2
    assert prefill.scheduler.get_num_new_matched_tokens(req, 0) == (0, False)
    prefill.forward(new_step(req, [1, 2, 3, 4], 0, 14), flush=False)
    # The step is over (vLLM could answer now): the pool already holds every block, unflushed.
    keys = block_hashes(req.prompt_token_ids, BLOCK, "tiny-llama")
    assert all(pool.server.store.blocks.get(rank_key(k, 0)) is not None for k in keys[:3])
    assert prefill.worker._worker.stats["saved_blocks"] == 3
    objects = len(pool.server.store.blocks)
    req_d = Request("d1", prompt(14, start=300))
    assert decode.scheduler.get_num_new_matched_tokens(req_d, 0) == (12, False)
    decode.scheduler.update_state_after_alloc(req_d, Blocks([9, 10, 11, 12]), 12)
    decode.forward(new_step(req_d, [9, 10, 11, 12], 12, 2))
    for name in LAYERS:
        assert np.array_equal(decode.kv[name][:, [9, 10, 11]], prefill.kv[name][:, [1, 2, 3]])
    other = Request("d2", prompt(14, start=700))  # a prompt no prefill pod saw: computed, never saved
    decode.scheduler.get_num_new_matched_tokens(other, 0)
    decode.forward(new_step(other, [13, 14, 15, 0], 0, 14))
    assert len(pool.server.store.blocks) == objects and decode.worker._worker.stats["saved_blocks"] == 0
    prefill.close()
    decode.close()


def test_an_unknown_kv_role_is_refused_when_vllm_builds_the_connector(connector_module, pool):
    with pytest.raises(ValueError, match="kv_transfer_config.kv_role: 'kv_prefill'"):
        Engine(connector_module, pool.member, 23, kv_role="kv_prefill")


def test_chunked_prefill_saves_each_block_once_as_it_completes(connector_module, pool):
    a = Engine(connector_module, pool.member, 3)
    req = Request("long", prompt(41, start=7))  # 10 full blocks + 1
    ids = list(range(11))
    a.scheduler.get_num_new_matched_tokens(req, 0)
    step1 = a.scheduler.build_connector_meta(new_step(req, ids, 0, 18))  # blocks 0-3 complete
    assert [s.keys for s in step1.saves] == [a.scheduler._scheduler._keys["long"][:4]]
    cached = CachedRequestData(["long"], set(), [None], [18])
    step2 = a.scheduler.build_connector_meta(SchedulerOutput([], cached, {"long": 23}))
    assert [s.block_ids for s in step2.saves] == [[4, 5, 6, 7, 8, 9]]
    step3 = a.scheduler.build_connector_meta(SchedulerOutput([], CachedRequestData(["long"], set(), [None], [41]), {"long": 1}))
    assert step3.saves == [] and step3.loads == []
    a.close()


def test_block_evicted_between_lookup_and_load_is_reported_for_recompute(connector_module, pool):
    a, b = Engine(connector_module, pool.member, 4), Engine(connector_module, pool.member, 5)
    req = Request("r", prompt(17, start=900))  # 4 full blocks + 1
    a.forward(new_step(req, [0, 1, 2, 3, 4], 0, 17))
    assert b.scheduler.get_num_new_matched_tokens(req, 0) == (16, False)
    keys = block_hashes(req.prompt_token_ids, BLOCK, "tiny-llama")
    pool.loop.call_soon_threadsafe(pool.server.store.remove, rank_key(keys[2], 0))  # evicted meanwhile
    b.scheduler.update_state_after_alloc(req, Blocks([9, 8, 7, 6, 5]), 16)
    b.forward(new_step(req, [9, 8, 7, 6, 5], 16, 1))
    assert b.worker.get_block_ids_with_load_errors() == {7, 6}
    assert b.worker.get_block_ids_with_load_errors() == set()  # reported once
    for name in LAYERS:
        assert np.array_equal(b.kv[name][:, [9, 8]], a.kv[name][:, [0, 1]])
    a.close()
    b.close()


def test_lora_requests_do_not_share_blocks_with_the_base_model(connector_module, pool):
    a = Engine(connector_module, pool.member, 6)
    base = Request("base", prompt(9))
    a.forward(new_step(base, [0, 1, 2], 0, 9))
    lora = Request("lora", prompt(9), lora_request=types.SimpleNamespace(lora_name="sql-lora"))
    assert a.scheduler.get_num_new_matched_tokens(lora, 0) == (0, False)
    assert a.scheduler.get_num_new_matched_tokens(Request("again", prompt(9)), 0) == (8, False)
    a.close()


def test_dead_pool_means_no_external_tokens_not_an_error(connector_module):
    a = Engine(connector_module, "127.0.0.1:1", 7)
    req = Request("r", prompt(30))
    assert a.scheduler.get_num_new_matched_tokens(req, 0) == (0, False)
    a.forward(new_step(req, list(range(8)), 0, 30))  # the save is dropped silently
    a.close()


def test_worker_hooks_without_bound_metadata_fail_loudly(connector_module, pool):
    a = Engine(connector_module, pool.member, 8)
    with pytest.raises(AssertionError):
        a.worker.start_load_kv(forward_context=None)
    a.close()


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({"members": "10.0.0.1:9600, 10.0.0.2:9600"}, ["10.0.0.1:9600", "10.0.0.2:9600"]),
        ({"members": ["10.0.0.3:9600"]}, ["10.0.0.3:9600"]),
        ({"dns_name": "kv.llm.svc", "port": 9700}, "kv.llm.svc:9700"),
    ],
)
def test_client_config_from_extra_config(extra, want):
    members = client_config_from_extra(extra, environ={}).members
    assert (members.static if members.source == "static" else f"{members.dns_name}:{members.port}") == want


def test_client_timing_from_extra_config_and_a_bad_value_named():
    config = client_config_from_extra({"members": "10.0.0.1:9600", "timeout_ms": 5000, "connect_timeout_ms": "2000",
                                       "dead_member_backoff_seconds": 1}, environ={})
    assert (config.timeout_ms, config.connect_timeout_ms, config.dead_member_backoff_seconds) == (5000, 2000, 1)
    with pytest.raises(ValueError, match=r"^kv_connector_extra_config.connect_timeout_ms: Input should be greater "
                                         r"than 0, got -5$"):
        client_config_from_extra({"members": "10.0.0.1:9600", "connect_timeout_ms": -5}, environ={})


def test_client_config_without_a_pool_says_what_to_give():
    with pytest.raises(ValueError, match="kv_connector_extra_config names no pool: give pool_config"):
        client_config_from_extra({}, environ={})


def test_module_imports_without_vllm():
    module = importlib.import_module("runtime_components.kv.vllm_connector")
    real_vllm = importlib.util.find_spec("vllm") is not None
    assert module.VLLM_AVAILABLE is real_vllm
    assert hasattr(module, "AIBrixKVConnector") is real_vllm


def test_client_config_from_a_pool_config_file(tmp_path):
    path = tmp_path / "pool.yaml"
    path.write_text("client:\n  members: {source: dns, dnsName: kv.llm.svc, port: 9700}\n  timeoutMs: 50\n")
    config = client_config_from_extra({}, environ={"AIBRIX_KV_POOL_CONFIG": str(path)})
    assert (config.members.dns_name, config.members.port, config.timeout_ms) == ("kv.llm.svc", 9700, 50.0)
    path.write_text("server: {capacity: 1Gi}\n")
    with pytest.raises(ValueError, match="no `client:` block; the connector needs the pool's members"):
        client_config_from_extra({"pool_config": str(path)}, environ={})


def test_tensor_parallel_ranks_use_distinct_keys_and_rank_0_the_prefix_hash():
    keys = [rank_key(12345, rank) for rank in range(4)]
    assert keys[0] == 12345 and len(set(keys)) == 4 and all(0 <= k < 2**64 for k in keys)


def test_one_pool_object_per_layer_and_each_layer_waits_only_for_its_own(connector_module, pool):
    a = Engine(connector_module, pool.member, 11, min_key_bytes=0)
    b = Engine(connector_module, pool.member, 12, min_key_bytes=0)
    req = Request("r", prompt(13, start=500))  # 3 full blocks + 1
    a.forward(new_step(req, [0, 1, 2, 3], 0, 13))
    keys = block_hashes(req.prompt_token_ids, BLOCK, "tiny-llama")
    stored = pool.server.store.blocks
    assert all(part_key(k, g, 0) in stored for k in keys[:3] for g in (0, 1))
    assert b.scheduler.get_num_new_matched_tokens(req, 0) == (12, False)
    b.scheduler.update_state_after_alloc(req, Blocks([5, 6, 7, 8]), 12)
    b.forward(new_step(req, [5, 6, 7, 8], 12, 1))
    for name in LAYERS:
        assert np.array_equal(b.kv[name][:, [5, 6, 7]], a.kv[name][:, [0, 1, 2]])
    stats = b.worker._worker.stats
    assert (stats["groups"], stats["layer_waits"], stats["late_groups"], stats["loaded_blocks"]) == (2, 2, 0, 3)
    a.close()
    b.close()


def test_a_lost_layer_object_makes_its_block_and_the_rest_a_load_error(connector_module, pool):
    a = Engine(connector_module, pool.member, 13, min_key_bytes=0)
    b = Engine(connector_module, pool.member, 14, min_key_bytes=0)
    req = Request("r", prompt(17, start=700))  # 4 full blocks + 1
    a.forward(new_step(req, [0, 1, 2, 3, 4], 0, 17))
    keys = block_hashes(req.prompt_token_ids, BLOCK, "tiny-llama")
    assert b.scheduler.get_num_new_matched_tokens(req, 0) == (16, False)
    pool.loop.call_soon_threadsafe(pool.server.store.remove, part_key(keys[1], 1, 0))  # layer 1 of block 1 evicted
    b.scheduler.update_state_after_alloc(req, Blocks([9, 8, 7, 6, 5]), 16)
    b.forward(new_step(req, [9, 8, 7, 6, 5], 16, 1))
    assert b.worker.get_block_ids_with_load_errors() == {8, 7, 6}
    assert np.array_equal(b.kv[LAYERS[1]][:, [9]], a.kv[LAYERS[1]][:, [0]])
    a.close()
    b.close()
